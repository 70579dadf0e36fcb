"""Notifications through Apprise (the optional extra ``notify``): MAINT_NOTIFY_URLS, in MAINT_NOTIFY_LANGUAGE.

Who sends what: the shim notices its own state changes (``stalled``, ``overdue``, ``finished``: once
per change into that state, see ``transition``); the scripts send ``start`` (the switch is done),
``back`` (the services answer again), ``switch-failed`` and ``rolled-back`` through
``maintenance-shim notify EVENT``, because the shim may not be running then. A shim that runs without
the scripts (no MAINT_STATE_DIR) sends ``start`` itself.

Sending happens in one worker thread, never on the event loop; a target that fails is logged once (until
it succeeds again) and never affects serving. Apprise is imported by that thread on first use.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, get_args

from babel.dates import format_timedelta
from babel.numbers import format_decimal

if TYPE_CHECKING:
    from .eta import State
    from .status import Snapshot, Tracker

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
# Notification texts. Keys starting with "_" are pieces; other locales fall back to English.
TEXTS: dict[str, dict[str, str | tuple[str, str]]] = {
    "en": {
        "start": ("{services}: maintenance started",
                  "{services} now get the maintenance answer while the GPU trains."),
        "stalled": ("{services}: training stalled", "No training progress for {stall}; last step: {step}."),
        "overdue": ("{services}: training overdue", "The expected end has passed; last step: {step}."),
        "finished": ("{services}: training finished",
                     "Training finished at step {step}{status}; the services are being brought back."),
        "back": ("{services}: services are back", "{services} answer again.{summary}"),
        "switch-failed": ("{services}: switch failed", "{detail}"),
        "rolled-back": ("{services}: switch rolled back", "{detail}"),
        "_of": "{step} of {total}",
        "_exit": " (exit status {code})",
        "_summary": " Maintenance lasted {duration}; {count} requests were turned away.",
        "_none": "none",
        "_all": "The services",
        "_sep": ", ",
    },
    "ja": {
        "start": ("{services}: メンテナンスを開始しました",
                  "GPU での学習中、{services} にはメンテナンス応答を返します。"),
        "stalled": ("{services}: 学習が停止しています",
                    "{stall}のあいだ学習が進んでいません。最後のステップ: {step}。"),
        "overdue": ("{services}: 学習が予定を過ぎています", "予定の終了時刻を過ぎました。最後のステップ: {step}。"),
        "finished": ("{services}: 学習が終了しました",
                     "ステップ {step} で学習が終了しました{status}。サービスを再開しています。"),
        "back": ("{services}: サービスが再開しました", "{services} が再び応答しています。{summary}"),
        "switch-failed": ("{services}: 切り替えに失敗しました", "{detail}"),
        "rolled-back": ("{services}: 切り替えを元に戻しました", "{detail}"),
        "_of": "{step} / {total}",
        "_exit": "（終了コード {code}）",
        "_summary": "メンテナンス時間 {duration}、お断りしたリクエスト {count} 件。",
        "_none": "なし",
        "_all": "サービス",
        "_sep": "、",
    },
    "zh_Hans": {
        "start": ("{services}：维护已开始", "GPU 训练期间，{services} 将返回维护响应。"),
        "stalled": ("{services}：训练停滞", "已有{stall}没有训练进度；最后一步：{step}。"),
        "overdue": ("{services}：训练超时", "已超过预计结束时间；最后一步：{step}。"),
        "finished": ("{services}：训练已完成", "训练在第 {step} 步结束{status}；正在恢复服务。"),
        "back": ("{services}：服务已恢复", "{services} 已重新响应。{summary}"),
        "switch-failed": ("{services}：切换失败", "{detail}"),
        "rolled-back": ("{services}：切换已回滚", "{detail}"),
        "_of": "{step}/{total}",
        "_exit": "（退出码 {code}）",
        "_summary": "维护时长 {duration}，拒绝了 {count} 个请求。",
        "_none": "无",
        "_all": "服务",
        "_sep": "、",
    },
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


def compose(event: Event, language: str, services: Sequence[str], facts: Facts) -> Notice:
    """The title and body of `event` in `language` (English when there is no text for it)."""
    if language not in TEXTS:
        language = "en"
    texts = TEXTS[language]

    def piece(key: str) -> str:
        value = texts[key]
        assert isinstance(value, str)
        return value

    def number(value: int) -> str:
        return format_decimal(value, locale=language)

    names = piece("_sep").join(services) if services else piece("_all")
    step = piece("_none")
    if facts.step is not None:
        step = number(facts.step)
        if facts.total is not None:
            step = piece("_of").format(step=step, total=number(facts.total))
    summary = ""
    if facts.duration_seconds is not None and facts.turned_away is not None:
        summary = piece("_summary").format(
            duration=format_timedelta(round(facts.duration_seconds), locale=language, threshold=1.1),
            count=number(facts.turned_away),
        )
    values = {
        "services": names,
        "step": step,
        "stall": format_timedelta(round(facts.stall_seconds or 0), locale=language, threshold=1.1),
        "status": piece("_exit").format(code=facts.status) if facts.status is not None else "",
        "detail": facts.detail or "",
        "summary": summary,
    }
    pair = texts[event]
    assert isinstance(pair, tuple)
    title, body = pair
    return Notice(event, title.format(**values), body.format(**values).strip() or title.format(**values),
                  _KIND[event])


def split_urls(text: str) -> list[str]:
    """MAINT_NOTIFY_URLS: URLs separated by blanks, or by commas before the next `scheme://`."""
    parts = re.split(r"\s+|,(?=\s*[A-Za-z][A-Za-z0-9+.-]*://)", text)
    return [part.strip() for part in parts if part.strip()]


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
