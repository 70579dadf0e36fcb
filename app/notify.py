"""Notifications through Apprise (the optional extra ``notify``): MAINT_NOTIFY_URLS, in MAINT_NOTIFY_LANGUAGE.

Who sends what: the shim notices its own state changes (``stalled``, ``overdue``, ``finished``: once
per change into that state, see ``transition``); the scripts send ``start`` (the switch is done),
``back`` (the services answer again), ``switch-failed`` and ``rolled-back`` through
``maintenance-shim notify EVENT``, because the shim may not be running then. A shim that runs without
the scripts (no MAINT_STATE_DIR) sends ``start`` itself.

The texts come from the gettext catalogs (app/locales, compiled by app/i18n.py), numbers, durations and
lists of services from Babel, all in the notifications' language; a language without a catalog gets English.

Sending happens in one worker thread, never on the event loop; a target that fails is logged once (until
it succeeds again) and never affects serving. Apprise is imported by that thread on first use.
"""

from __future__ import annotations

import asyncio
import gettext
import logging
import queue
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, get_args

from babel.dates import format_timedelta
from babel.lists import format_list
from babel.numbers import format_decimal

from .i18n import available_catalogs, load_translations

if TYPE_CHECKING:
    from .progress.eta import State
    from .progress.tracker import Snapshot, Tracker

logger = logging.getLogger("maintenance_shim.notify")

Event = Literal["start", "stalled", "overdue", "finished", "back", "switch-failed", "rolled-back"]
EVENTS: tuple[str, ...] = get_args(Event)
_KIND: dict[str, str] = {
    "start": "info",
    "stalled": "warning",
    "overdue": "warning",
    "finished": "success",
    "back": "success",
    "switch-failed": "failure",
    "rolled-back": "warning",
}
_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


@dataclass(frozen=True)
class Notice:
    """One notification, composed in the operator's language."""

    event: Event
    title: str
    body: str
    kind: str


@dataclass(frozen=True)
class Facts:
    """What a notification may mention; every field optional."""

    step: int | None = None
    total: int | None = None
    stall_seconds: float | None = None
    status: int | None = None
    detail: str | None = None
    duration_seconds: float | None = None
    turned_away: int | None = None


_NO_CATALOG = gettext.NullTranslations()
_catalogs: dict[str, gettext.NullTranslations] = {}
_catalogs_lock = threading.Lock()


def translations_for(language: str) -> gettext.NullTranslations:
    """The catalog of `language`, compiled once (app/i18n.py); English when no catalog ships for it."""
    with _catalogs_lock:
        found = _catalogs.get(language)
        if found is None:
            # A regional tag (ja_JP, zh_TW, pt_PT) gets its language's catalog, matched as requests are.
            from .web.negotiate import LocaleMatcher

            catalog = LocaleMatcher(sorted(available_catalogs()), "en").match(language.replace("_", "-"))
            found = load_translations(catalog) if catalog else _NO_CATALOG
            _catalogs[language] = found
        return found


def compose(event: Event, language: str, services: Sequence[str], facts: Facts) -> Notice:
    """The title and body of `event` in `language`, from its catalog (English when there is none)."""
    translations = translations_for(language)
    if translations is _NO_CATALOG:
        language = "en"  # English words, so English numbers too
    _ = translations.gettext

    def number(value: int) -> str:
        return format_decimal(value, locale=language)

    def duration(seconds: float) -> str:
        return format_timedelta(round(seconds), locale=language, threshold=1.1)

    names = format_list(list(services), locale=language) if services else _("The services")
    step: str | None = None
    if facts.step is not None:
        step = number(facts.step)
        if facts.total is not None:
            step = _("%(step)s of %(total)s") % {"step": step, "total": number(facts.total)}
    values = {
        "services": names,
        "step": step,
        "stall": duration(facts.stall_seconds or 0),
        "status": str(facts.status) if facts.status is not None else None,
    }
    titles: dict[str, str] = {
        "start": _("%(services)s: maintenance started"),
        "stalled": _("%(services)s: training stalled"),
        "overdue": _("%(services)s: training overdue"),
        "finished": _("%(services)s: training finished"),
        "back": _("%(services)s: services are back"),
        "switch-failed": _("%(services)s: switch failed"),
        "rolled-back": _("%(services)s: switch rolled back"),
    }
    title = titles[event] % values
    if event == "start":
        body = _("%(services)s now get the maintenance answer while the GPU trains.")
    elif event == "stalled":
        body = (_("No training progress for %(stall)s; last step: %(step)s.") if step is not None
                else _("No training progress for %(stall)s; last step: none."))
    elif event == "overdue":
        body = (_("The expected end has passed; last step: %(step)s.") if step is not None
                else _("The expected end has passed; last step: none."))
    elif event == "finished":
        if step is not None:
            body = (_("Training finished at step %(step)s; the services are being brought back.")
                    if facts.status is None else
                    _("Training finished at step %(step)s (exit status %(status)s); the services are being "
                      "brought back."))
        else:
            body = (_("Training finished; the services are being brought back.") if facts.status is None
                    else _("Training finished (exit status %(status)s); the services are being brought back."))
    elif event == "back":
        if facts.duration_seconds is not None and facts.turned_away is not None:
            body = translations.ngettext(
                "%(services)s answer again. Maintenance lasted %(duration)s; %(count)s request was turned "
                "away.",
                "%(services)s answer again. Maintenance lasted %(duration)s; %(count)s requests were turned "
                "away.",
                facts.turned_away,
            )
            values |= {"duration": duration(facts.duration_seconds), "count": number(facts.turned_away)}
        else:
            body = _("%(services)s answer again.")
    else:  # switch-failed, rolled-back: what the script says
        return Notice(event, title, (facts.detail or "").strip() or title, _KIND[event])
    return Notice(event, title, (body % values).strip() or title, _KIND[event])


def describe(url: str) -> str:
    """A URL for log lines without its secrets: the scheme only."""
    match = _SCHEME_RE.match(url)
    return f"{match.group(1)}://" if match else "(not a URL)"


class Notifier:
    """Sends Notices to every URL from one daemon thread; ``event`` never blocks."""

    def __init__(self, urls: Sequence[str], language: str, services: Sequence[str]) -> None:
        self.urls = list(urls)
        self.language = language
        self.services = [name for name in services if name]
        translations_for(language)  # compiled now, at start-up, not on the event loop at the first event
        self._queue: queue.SimpleQueue[Notice | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._targets: list[Any] | None = None
        self._failing: set[int] = set()
        self.delivered = 0
        self.failed = 0

    def event(self, event: Event, facts: Facts | None = None) -> Notice:
        """Queue `event` for sending; returns the Notice."""
        notice = compose(event, self.language, self.services, facts or Facts())
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="maintenance-shim-notify", daemon=True)
                self._thread.start()
        self._queue.put(notice)
        return notice

    def close(self, timeout: float) -> bool:
        """Send what is queued, for at most `timeout` seconds; True when everything went out."""
        with self._lock:
            thread = self._thread
        if thread is None:
            return True
        self._queue.put(None)
        thread.join(timeout)
        if thread.is_alive():
            logger.warning("notifications still being sent after %g s; not waiting for them", timeout)
            return False
        return self.failed == 0

    def _work(self) -> None:
        while True:
            notice = self._queue.get()
            if notice is None:
                return
            try:
                self._deliver(notice)
            except Exception as error:  # a notification never takes the shim down
                logger.warning("notification %s could not be sent: %r", notice.event, error)

    def _load(self) -> list[Any]:
        if self._targets is not None:
            return self._targets
        self._targets = []
        try:
            import apprise
        except ImportError:
            logger.warning("MAINT_NOTIFY_URLS is set but Apprise is not installed "
                           "(pip install 'maintenance-shim[notify]'); no notifications are sent")
            return self._targets
        quiet = logging.getLogger("apprise")  # its own failure lines would repeat on every notification
        quiet.propagate = False
        quiet.addHandler(logging.NullHandler())
        for index, url in enumerate(self.urls, 1):
            target = apprise.Apprise()
            if target.add(url):
                self._targets.append((index, url, target))
            else:
                logger.warning("MAINT_NOTIFY_URLS entry %d (%s) is not a URL Apprise can send to; skipped",
                               index, describe(url))
        return self._targets

    def _deliver(self, notice: Notice) -> None:
        import apprise

        kind = {"info": apprise.NotifyType.INFO, "warning": apprise.NotifyType.WARNING,
                "success": apprise.NotifyType.SUCCESS, "failure": apprise.NotifyType.FAILURE}[notice.kind]
        for index, url, target in self._load():
            try:
                ok = bool(target.notify(body=notice.body, title=notice.title, notify_type=kind))
            except Exception:
                ok = False
            if ok:
                self.delivered += 1
                if index in self._failing:
                    self._failing.discard(index)
                    logger.info("notifications to %s (MAINT_NOTIFY_URLS entry %d) work again", describe(url), index)
                continue
            self.failed += 1
            if index not in self._failing:
                self._failing.add(index)
                logger.warning("notification %r to %s (MAINT_NOTIFY_URLS entry %d) failed; further failures "
                               "of this target are not logged until one succeeds", notice.event, describe(url), index)


_NOTIFIED_STATES: dict[str, Event] = {"stalled": "stalled", "overdue": "overdue", "finishing": "finished"}


def transition(previous: State | None, current: State) -> Event | None:
    """The event a change of state is worth, once per change: into stalled, overdue or finishing."""
    if current == previous:
        return None
    return _NOTIFIED_STATES.get(current)


def _training_done(snapshot: Snapshot) -> bool:
    """The trainer's exit was recorded (with_maintenance.sh), or the progress reached its total."""
    progress = snapshot.progress
    return snapshot.trainer_status is not None or (
        progress is not None and progress.total is not None and progress.step >= progress.total
    )


class NotifyWatcher:
    """Looks at the tracker's Snapshot once a second and notifies the changes ``transition`` names."""

    def __init__(self, tracker: Tracker, notifier: Notifier, interval: float = 1.0) -> None:
        self.tracker = tracker
        self.notifier = notifier
        self.interval = interval
        self._state: State | None = None

    def poll_once(self) -> None:
        try:
            snapshot = self.tracker.snapshot()
            event = transition(self._state, snapshot.state)
            self._state = snapshot.state
            if event == "finished" and not _training_done(snapshot):
                event = None  # stopped by hand: the scripts' `back` says it
            if event is not None:
                self.notifier.event(event, self.facts(snapshot))
        except Exception as error:  # never let notifications hurt serving
            logger.warning("notifications: %r", error)

    def facts(self, snapshot: Snapshot) -> Facts:
        progress = snapshot.progress
        return Facts(
            step=progress.step if progress else None,
            total=progress.total if progress else None,
            stall_seconds=self.tracker.stall_seconds,
            status=snapshot.trainer_status,
        )

    async def run(self) -> None:
        while True:
            self.poll_once()
            await asyncio.sleep(self.interval)
