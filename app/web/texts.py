"""The localized facts of one Snapshot: every sentence a response shows, from the catalogs, per locale."""

from __future__ import annotations

import gettext
from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import tzinfo

from babel.lists import format_list
from babel.numbers import format_decimal, format_percent

from ..i18n import clock_time, relative_time
from ..progress.tracker import NodeSnapshot, Progress, Snapshot


@dataclass(frozen=True)
class Texts:
    """What every format says, in one locale."""

    title: str
    state_label: str
    message: str
    eta_sentence: str
    eta_relative: str | None
    eta_clock: str | None
    detail: str
    progress: str | None
    steps_left: str | None
    problem_title: str


_TEXT_FIELDS = tuple(field.name for field in fields(Texts))


# Babel's times and numbers hold no-break spaces (U+202F in `9:22 AM` and in French `1 200`, U+00A0 in
# `22 Min.`): SDKs print the JSON's sentences verbatim, and some escape these (huggingface_hub shows a repr:
# `9:22\u202fAM`); a terminal may not show them at all. The page keeps them.
_PLAIN_SPACES = str.maketrans({"\u202f": " ", "\u00a0": " ", "\u2007": " "})


def plain_spaces(text: str) -> str:
    """`text` with every no-break space a plain space."""
    if "\u202f" in text or "\u00a0" in text or "\u2007" in text:
        return text.translate(_PLAIN_SPACES)
    return text


def plain_texts(texts: Texts) -> Texts:
    """`texts` for SDKs and terminals: plain spaces throughout."""
    values = (getattr(texts, name) for name in _TEXT_FIELDS)
    return Texts(*(plain_spaces(value) if isinstance(value, str) else value for value in values))


def _state_message(translations: gettext.NullTranslations, state: str, service: str) -> str:
    _ = translations.gettext
    messages = {
        "training": _("%(service)s is paused while its GPU trains a new model."),
        "estimating": _("%(service)s is paused while its GPU trains a new model."),
        "finishing": _("Training is complete. %(service)s is saving the model and starting up again."),
        "overdue": _(
            "Training is taking longer than expected. %(service)s will be back as soon as it finishes."
        ),
        "stalled": _(
            "Training has not reported progress for a while. %(service)s stays paused until it finishes."
        ),
        "unknown": _("%(service)s is paused for maintenance."),
    }
    return messages.get(state, messages["unknown"]) % {"service": service}


def _plain(value: str) -> str:
    return value


def _after_sentence(
    translations: gettext.NullTranslations,
    snapshot: Snapshot,
    locale: str,
    service: str,
    isolate: Callable[[str], str] = _plain,
    display: Callable[[str], str] = _plain,
) -> str:
    """What the scripts report after the last step: the trainer's exit, the services starting or ready."""
    _ = translations.gettext
    names = service
    if snapshot.services:
        names = format_list([isolate(display(name)) for name in snapshot.services], locale=locale)
    status = snapshot.trainer_status
    if snapshot.after == "trainer-exited":
        if status is None or status == 0:
            return _("The training job has finished; %(services)s will be started next.") % {"services": names}
        return _("The training job ended with status %(status)s; %(services)s will be started next.") % {
            "status": isolate(format_decimal(status, locale=locale)),
            "services": names,
        }
    if snapshot.after == "starting":
        return _("Starting %(services)s.") % {"services": names}
    if snapshot.after == "waiting":
        return _("Waiting for the health check of %(services)s.") % {"services": names}
    return _("Ready again: %(services)s.") % {"services": names}


def _state_label(translations: gettext.NullTranslations, state: str) -> str:
    _ = translations.gettext
    labels = {
        "training": _("Training"),
        "estimating": _("Training"),
        "finishing": _("Finishing"),
        "overdue": _("Running late"),
        "stalled": _("Stalled"),
        "unknown": _("Maintenance"),
    }
    return labels.get(state, labels["unknown"])


def build_texts(
    snapshot: Snapshot,
    translations: gettext.NullTranslations,
    locale: str,
    service: str,
    operator_message: str | None = None,
    isolate: Callable[[str], str] = _plain,
    zone: tzinfo | None = None,
    display: Callable[[str], str] = _plain,
) -> Texts:
    """All sentences for `snapshot` in `locale`; the operator's message, if any, replaces the catalog's.

    `isolate` wraps each value put into a sentence (a service name, a number, a time): the page passes
    one that marks them for `<bdi>`, so that a Latin name or a number keeps its direction in Arabic.
    """
    _ = translations.gettext
    service = isolate(service) if service else _("This service")
    message = operator_message or _state_message(translations, snapshot.state, service)
    if snapshot.after is not None:
        message = f"{message} {_after_sentence(translations, snapshot, locale, service, isolate, display)}"
    relative = clock = None
    if snapshot.eta_seconds is not None and snapshot.eta_at is not None:
        relative = relative_time(snapshot.eta_seconds, locale)
        clock = clock_time(snapshot.eta_at, locale, zone)
        if snapshot.state == "overdue":
            sentence = _("New estimate: back %(relative)s (around %(clock)s).")
        else:
            sentence = _("Expected back %(relative)s (around %(clock)s).")
        eta_sentence = sentence % {"relative": isolate(relative), "clock": isolate(clock)}
        if snapshot.basis == "history":
            eta_sentence = _("%(eta)s (Estimated from recent runs.)") % {"eta": eta_sentence}
    elif snapshot.progress is not None and snapshot.progress.scope == "epoch":
        eta_sentence = _("Only the current epoch's progress is known, so there is no estimate for the whole run.")
    elif snapshot.state == "estimating":
        eta_sentence = _("Training has started; an estimate follows once the pace is measured.")
    else:
        eta_sentence = _("There is no estimate yet; please try again later.")
    detail = _("%(message)s %(eta)s") % {"message": message, "eta": eta_sentence}
    progress_text = steps_left = None
    if snapshot.progress is not None:
        progress_text, steps_left = _progress_texts(translations, snapshot.progress, locale, isolate)
    return Texts(
        title=_("%(service)s will be back soon") % {"service": service},
        state_label=_state_label(translations, snapshot.state),
        message=message,
        eta_sentence=eta_sentence,
        eta_relative=relative,
        eta_clock=clock,
        detail=detail,
        progress=progress_text,
        steps_left=steps_left,
        problem_title=_("Service unavailable"),
    )


def _progress_texts(
    translations: gettext.NullTranslations, progress: Progress, locale: str, isolate: Callable[[str], str]
) -> tuple[str, str | None]:
    """"Step 1,200 of 3,000 (40%)" (with the epoch and the phase when known) and "1,800 steps to go"."""
    _ = translations.gettext
    ngettext = translations.ngettext
    steps_left = None
    step = isolate(format_decimal(progress.step, locale=locale))
    if progress.total:
        progress_text = _("Step %(step)s of %(total)s (%(percent)s)") % {
            "step": step,
            "total": isolate(format_decimal(progress.total, locale=locale)),
            "percent": isolate(format_percent(progress.fraction or 0.0, locale=locale)),
        }
        left = max(0, progress.total - progress.step)
        steps_left = ngettext(
            "%(num)s step to go", "%(num)s steps to go", left
        ) % {"num": isolate(format_decimal(left, locale=locale))}
    else:
        progress_text = _("Step %(step)s") % {"step": step}
    if progress.scope == "epoch" and progress.epoch is not None:
        progress_text = _("Epoch %(epoch)s: %(progress)s") % {
            "epoch": isolate(format_decimal(progress.epoch, locale=locale)),
            "progress": progress_text,
        }
    phase = {"evaluating": _("Evaluating the model"), "saving": _("Saving a checkpoint")}.get(progress.phase or "")
    if phase:
        progress_text = _("%(progress)s · %(phase)s") % {"progress": progress_text, "phase": phase}
    return progress_text, steps_left


@dataclass(frozen=True)
class NodeTexts:
    """What the page says about one node: its state label, its ETA (or why there is none) and progress."""

    node: str
    state_label: str
    eta_relative: str | None
    eta_sentence: str
    progress: str | None


def build_node_texts(
    node: NodeSnapshot,
    translations: gettext.NullTranslations,
    locale: str,
    isolate: Callable[[str], str] = _plain,
    zone: tzinfo | None = None,
) -> NodeTexts:
    """One node's sentences in `locale`, from the service's own phrases (the page's script builds the same)."""
    _ = translations.gettext
    relative = None
    if node.eta_seconds is not None and node.eta_at is not None:
        relative = relative_time(node.eta_seconds, locale)
        if node.state == "overdue":
            sentence = _("New estimate: back %(relative)s (around %(clock)s).")
        else:
            sentence = _("Expected back %(relative)s (around %(clock)s).")
        clock = clock_time(node.eta_at, locale, zone)
        eta_sentence = sentence % {"relative": isolate(relative), "clock": isolate(clock)}
    elif node.progress is not None and node.progress.scope == "epoch":
        eta_sentence = _("Only the current epoch's progress is known, so there is no estimate for the whole run.")
    elif node.state == "estimating":
        eta_sentence = _("Training has started; an estimate follows once the pace is measured.")
    else:
        eta_sentence = ""
    progress = None
    if node.progress is not None:
        progress = _progress_texts(translations, node.progress, locale, isolate)[0]
    return NodeTexts(node.node, _state_label(translations, node.state), relative, eta_sentence, progress)
