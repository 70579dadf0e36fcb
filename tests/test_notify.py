"""Notifications through real Apprise to a real local JSON webhook: the shim's own events, the scripts'
events, the operator's language, and a dead webhook that changes nothing for clients."""

from __future__ import annotations

import json
import shlex
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from babel.messages.extract import extract_from_file
from babel.messages.pofile import read_po
from babel.support import Translations

from maintenance_shim.i18n import LOCALES_DIR
from maintenance_shim.notify import EVENTS, Facts, Notifier, compose, transition, translations_for
from maintenance_shim.reporter import write_progress_file
from maintenance_shim.settings.shim import Settings, split_urls
from tests.support import ShimFactory, clean_env, free_port

ROOT = Path(__file__).resolve().parent.parent
OFFERED: list[str] = Settings.model_fields["languages"].default_factory()  # type: ignore[call-arg,misc]
SHIM_CMD = str(Path(sys.executable).with_name("maintenance-shim"))


class _Handler(BaseHTTPRequestHandler):
    server: _WebhookServer

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with self.server.lock:
            self.server.received.append((self.path, json.loads(body)))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _WebhookServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.received: list[tuple[str, dict[str, Any]]] = []
        self.lock = threading.Lock()


class Webhook:
    """A JSON webhook on loopback that keeps every notification Apprise posts to it."""

    def __init__(self, server: _WebhookServer) -> None:
        self.server = server
        self.port = server.server_address[1]

    def url(self, path: str) -> str:
        return f"json://127.0.0.1:{self.port}/{path}"

    def received(self, path: str) -> list[dict[str, Any]]:
        with self.server.lock:
            return [body for where, body in self.server.received if where == f"/{path}"]

    def wait_for(self, path: str, count: int, timeout: float = 15) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.received(path)) < count:
            assert time.monotonic() < deadline, f"{path}: {self.received(path)}"
            time.sleep(0.05)
        return self.received(path)


@pytest.fixture(scope="module")
def webhook() -> Iterator[Webhook]:
    """One webhook server for the module; each test posts to its own path."""
    server = _WebhookServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield Webhook(server)
    server.shutdown()
    server.server_close()


# Facts as each sender gives them: everything, nothing, a step without a total, the scripts' counts.
_FACTS = [
    Facts(step=1200, total=3000, stall_seconds=300, status=0, detail="why", duration_seconds=90, turned_away=7),
    Facts(),
    Facts(step=40, stall_seconds=61),
    Facts(status=137),
    Facts(duration_seconds=3600, turned_away=1),
]


def _notify_messages() -> set[str]:
    """Every msgid app/notify.py asks its catalog for (the singular of a plural)."""
    found = set()
    with (ROOT / "app" / "notify.py").open("rb") as handle:
        for _line, message, _comments, _context in extract_from_file("python", handle.name):
            found.add(message if isinstance(message, str) else message[0])
    return found


def test_every_event_has_a_text_in_every_offered_language() -> None:
    messages = _notify_messages()
    assert len(messages) >= 20, messages
    for language in OFFERED:
        with (LOCALES_DIR / language / "LC_MESSAGES" / "messages.po").open("rb") as handle:
            catalog = read_po(handle, locale=language)
        for msgid in messages:
            entry = catalog.get(msgid)
            assert entry is not None and not entry.fuzzy, (language, msgid)
            strings = [entry.string] if isinstance(entry.string, str) else list(entry.string)
            assert strings and all(strings), (language, msgid)
        assert isinstance(translations_for(language), Translations), language  # its catalog, not English
        for event in EVENTS:
            for facts in _FACTS:
                notice = compose(event, language, ["studio", "video"], facts)
                english = compose(event, "en", ["studio", "video"], facts)
                assert notice.title.startswith("studio") and notice.body, (language, event, facts)
                assert notice.kind == english.kind
                if language == "en":
                    continue
                assert notice.title != english.title, (language, event, facts)  # no English left
                if event in ("switch-failed", "rolled-back"):
                    assert notice.body == (facts.detail or notice.title)  # the script's words, as given
                else:
                    assert notice.body != english.body, (language, event, facts)
                    assert "%(" not in notice.body and "%(" not in notice.title
    assert compose("stalled", "ja", ["studio"], Facts(step=1200)).title == "studio：学習の進捗が止まっています"
    assert "1,200 / 3,000" in compose("stalled", "ja", [], Facts(step=1200, total=3000)).body
    # A language with no catalog gets English throughout, numbers and lists included.
    assert compose("back", "it", ["studio"], Facts()).title == "studio: services are back"
    notice = compose("stalled", "it", ["a", "b"], Facts(step=1200, stall_seconds=120))
    assert (notice.title, notice.body) == ("a and b: training stalled",
                                           "No training progress for 2 minutes; last step: 1,200.")


def test_counts_take_the_languages_plural_forms() -> None:
    def back(language: str, count: int) -> str:
        return compose("back", language, ["studio"], Facts(duration_seconds=120, turned_away=count)).body

    assert back("en", 1).endswith("; 1 request was turned away.")
    assert back("en", 3).endswith("; 3 requests were turned away.")
    assert [back("ru", n).rsplit("; ", 1)[1] for n in (1, 3, 5, 21, 1000)] == [
        "отклонён 1 запрос.", "отклонено 3 запроса.", "отклонено 5 запросов.", "отклонён 21 запрос.",
        "отклонено 1\xa0000 запросов.",
    ]
    assert [back("ar", n).rsplit("؛ ", 1)[1] for n in (0, 1, 2, 3, 11, 100)] == [
        "ولم يُرفض أي طلب.", "ورُفض طلب واحد.", "ورُفض طلبان.", "ورُفضت 3 طلبات.", "ورُفض 11 طلبًا.",
        "ورُفض 100 طلب.",
    ]
    assert back("fr", 0).endswith("0 requête a été refusée.") and back("fr", 2).endswith("2 requêtes ont été refusées.")
    assert back("de", 1).endswith("; 1 Anfrage wurde abgewiesen.")


@pytest.mark.parametrize(
    ("previous", "current", "event"),
    [
        (None, "training", None), ("training", "stalled", "stalled"), ("stalled", "stalled", None),
        ("stalled", "training", None), ("training", "overdue", "overdue"), ("training", "finishing", "finished"),
        ("finishing", "finishing", None), (None, "stalled", "stalled"), ("estimating", "unknown", None),
    ],
)
def test_transition_once_per_change(previous: Any, current: Any, event: str | None) -> None:
    assert transition(previous, current) == event


def test_split_urls_keeps_commas_inside_a_url() -> None:
    text = "json://h/a, mailto://u:p@example.com?to=a@x.org,b@y.org  ntfy://topic"
    assert split_urls(text) == ["json://h/a", "mailto://u:p@example.com?to=a@x.org,b@y.org", "ntfy://topic"]


def _titles(bodies: list[dict[str, Any]]) -> list[str]:
    return [body["title"] for body in bodies]


def test_the_shim_notifies_start_stall_and_finish_once_each(
    start_shim: ShimFactory, webhook: Webhook, tmp_path: Path
) -> None:
    progress = tmp_path / "progress.json"
    shim = start_shim(services=["studio"], env={
        "MAINT_PROGRESS_FILE": str(progress), "MAINT_STALL_SECONDS": "1.5",
        "MAINT_NOTIFY_URLS": webhook.url("shim"),
    })
    assert _titles(webhook.wait_for("shim", 1)) == ["studio: maintenance started"]  # no scripts: the shim says it
    for step in range(10, 60, 10):
        write_progress_file(progress, step, 100)
        time.sleep(0.3)
    received = webhook.wait_for("shim", 2)
    assert received[1]["title"] == "studio: training stalled" and received[1]["type"] == "warning"
    assert "last step: 50 of 100" in received[1]["message"]
    write_progress_file(progress, 100, 100)
    received = webhook.wait_for("shim", 3)
    assert received[2]["title"] == "studio: training finished" and "100 of 100" in received[2]["message"]
    # sleep-ok: a quiet period (nothing more may come): longer on a busy machine, never a false failure
    time.sleep(2.5)  # still finishing, and the stall time passed again: nothing more
    assert len(webhook.received("shim")) == 3, _titles(webhook.received("shim"))
    assert shim.proc.poll() is None


def test_overdue_in_the_operators_language(start_shim: ShimFactory, webhook: Webhook) -> None:
    start_shim(services=["studio"], env={
        "MAINT_ETA": "2", "MAINT_NOTIFY_URLS": webhook.url("ja"), "MAINT_NOTIFY_LANGUAGE": "ja",
    })
    received = webhook.wait_for("ja", 2)
    assert _titles(received) == ["studio：メンテナンスを開始しました", "studio：学習が予定より遅れています"]
    assert received[1]["message"] == "予定の終了時刻を過ぎました。最後のステップ：なし。"


_IN_EACH_LANGUAGE: dict[str, list[tuple[str, Facts, str, str]]] = {
    "ja": [
        ("stalled", Facts(step=1200, total=3000, stall_seconds=300), "studio：学習の進捗が止まっています",
         "5 分のあいだ学習が進んでいません。最後のステップ：1,200 / 3,000。"),
        ("back", Facts(duration_seconds=5400, turned_away=3), "studio：サービスが再開しました",
         "studio が再び応答しています。メンテナンス時間は 2 時間、お断りしたリクエストは 3 件です。"),
    ],
    "ar": [
        ("stalled", Facts(step=1200, total=3000, stall_seconds=300), "studio: توقّف تقدّم التدريب",
         "لا يُحرز التدريب أي تقدّم، ومدة التوقف حتى الآن 5 دقائق؛ آخر خطوة: 1,200 من 3,000."),
        ("back", Facts(duration_seconds=5400, turned_away=2), "studio: عادت الخدمات",
         "studio: عادت الاستجابة للطلبات. مدة الصيانة ساعتان؛ ورُفض طلبان."),
        ("finished", Facts(step=3000, total=3000, status=0), "studio: اكتمل التدريب",
         "انتهى التدريب عند الخطوة 3,000 من 3,000 (رمز الحالة 0)؛ وتجري إعادة تشغيل الخدمات."),
    ],
    "ru": [
        ("stalled", Facts(step=1200, total=3000, stall_seconds=60), "studio: нет прогресса обучения",
         "Время без прогресса обучения: 60 секунд; последний шаг: 1\xa0200 из 3\xa0000."),
        ("back", Facts(duration_seconds=5400, turned_away=3), "studio: работа возобновлена",
         "studio: запросы снова обрабатываются. Длительность обслуживания: 2 часа; отклонено 3 запроса."),
    ],
    "de": [
        ("overdue", Facts(step=1200, total=3000), "studio: Training überfällig",
         "Das erwartete Ende ist überschritten; letzter Schritt: 1.200 von 3.000."),
        ("back", Facts(duration_seconds=5400, turned_away=1), "studio: Dienste wieder verfügbar",
         "studio: Anfragen werden wieder beantwortet. Die Wartung dauerte 2 Stunden; 1 Anfrage wurde abgewiesen."),
        ("switch-failed", Facts(detail="nginx -t failed"), "studio: Umschaltung fehlgeschlagen", "nginx -t failed"),
    ],
}


# In this process Apprise's plugins import imghdr, which warns (the suite makes warnings errors).
@pytest.mark.filterwarnings("ignore:'imghdr' is deprecated:DeprecationWarning")
@pytest.mark.parametrize("language", sorted(_IN_EACH_LANGUAGE))
def test_notifications_arrive_in_the_operators_language(webhook: Webhook, language: str) -> None:
    """In-process, through real Apprise to the real webhook (the Notifier the shim and `notify` use)."""
    path = f"lang-{language}"
    notifier = Notifier([webhook.url(path)], language, ["studio"])
    cases = _IN_EACH_LANGUAGE[language]
    for event, facts, _title, _body in cases:
        notifier.event(event, facts)  # type: ignore[arg-type]
    assert notifier.close(15)
    received = webhook.wait_for(path, len(cases))
    assert [(body["title"], body["message"]) for body in received] == [(title, text) for _, _, title, text in cases]
    kinds = {"stalled": "warning", "overdue": "warning", "back": "success", "finished": "success",
             "switch-failed": "failure"}
    assert [body["type"] for body in received] == [kinds[event] for event, *_ in cases]


def test_a_dead_webhook_changes_nothing_for_clients(start_shim: ShimFactory, tmp_path: Path) -> None:
    refused = free_port()  # nothing listens there
    blackhole = socket.socket()  # accepts connections (the kernel's backlog) and never answers
    blackhole.bind(("127.0.0.1", 0))
    blackhole.listen(16)
    try:
        shim = start_shim(services=["studio"], env={
            "MAINT_ETA": "1",
            "MAINT_NOTIFY_URLS": f"json://127.0.0.1:{refused}/dead "
                                 f"json://127.0.0.1:{blackhole.getsockname()[1]}/hang?rto=1&cto=1",
        })
        import http.client

        slowest = 0.0
        deadline = time.monotonic() + 4  # start and overdue are both sent (and fail) meanwhile
        count = 0
        while time.monotonic() < deadline:
            began = time.monotonic()
            conn = http.client.HTTPConnection("127.0.0.1", shim.port, timeout=5)
            conn.request("GET", "/", headers={"Accept": "application/json"})
            response = conn.getresponse()
            response.read()
            conn.close()
            assert response.status == 503 and response.getheader("Retry-After")
            slowest = max(slowest, time.monotonic() - began)
            count += 1
        assert slowest < 0.5, slowest
        log = shim.output()
        # Each failing target is logged once, although both notifications failed.
        assert log.count("(MAINT_NOTIFY_URLS entry 1) failed") == 1, log
        assert log.count("(MAINT_NOTIFY_URLS entry 2) failed") == 1, log
        assert f"127.0.0.1:{refused}" not in log  # URLs may hold secrets: only the scheme is logged
        assert "Traceback" not in log
    finally:
        blackhole.close()


def _env_file(tmp_path: Path, **settings: str) -> dict[str, str]:
    path = tmp_path / "maintenance.env"
    path.write_text("".join(f"{key}={shlex.quote(value)}\n" for key, value in settings.items()))
    return clean_env({"MAINT_ENV_FILE": str(path)})


def _script(name: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    from tests.support.scripts import run_script

    return run_script([str(ROOT / "scripts" / name)], env=env, cwd=cwd, timeout=60)


def test_the_scripts_notify_start_back_and_a_rolled_back_switch(webhook: Webhook, tmp_path: Path) -> None:
    port = free_port()
    base = {
        "MAINT_SWITCH": "none", "MAINT_STATE_DIR": str(tmp_path / "state"), "MAINT_SHIM_CMD": SHIM_CMD,
        "MAINT_LISTEN": f"127.0.0.1:{port}=studio", "MAINT_ADMIN_LISTEN": f"127.0.0.1:{free_port()}",
        "MAINT_NOTIFY_URLS": webhook.url("scripts"), "MAINT_LOG_LEVEL": "warning",
    }
    env = _env_file(tmp_path, **base)
    try:
        _notify_start_back_and_rollback(webhook, env, tmp_path, port)
    finally:
        _script("stop_maintenance.sh", env, tmp_path)  # nothing to do when the test got through; else no leftover


def _notify_start_back_and_rollback(webhook: Webhook, env: dict[str, str], tmp_path: Path, port: int) -> None:
    started = _script("start_maintenance.sh", env, tmp_path)
    assert started.returncode == 0, started.stderr
    assert _titles(webhook.wait_for("scripts", 1)) == ["studio: maintenance started"]  # from the script only
    import urllib.error
    import urllib.request

    for _ in range(3):
        with pytest.raises(urllib.error.HTTPError) as answer:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5)
        assert answer.value.code == 503
        answer.value.close()
    stopped = _script("stop_maintenance.sh", env, tmp_path)
    assert stopped.returncode == 0, stopped.stderr
    back = webhook.wait_for("scripts", 2)[1]
    assert back["title"] == "studio: services are back" and back["type"] == "success"
    assert "3 requests were turned away" in back["message"], back
    # A start that fails (the shim's port is taken) is rolled back, and says so.
    taken = socket.socket()
    taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # the port has connections in TIME_WAIT
    taken.bind(("127.0.0.1", port))
    taken.listen(1)
    try:
        failed = _script("start_maintenance.sh", env, tmp_path)
    finally:
        taken.close()
    assert failed.returncode == 1, failed.stderr
    rolled = webhook.wait_for("scripts", 3)[2]
    assert rolled["title"] == "studio: switch rolled back" and rolled["type"] == "warning"
    assert rolled["message"].startswith("start failed: ") and "rolled back" in rolled["message"], rolled
    assert len(webhook.received("scripts")) == 3


def test_notify_command_sends_a_failed_switch(webhook: Webhook, tmp_path: Path) -> None:
    env = clean_env({"MAINT_NOTIFY_URLS": webhook.url("cli"), "MAINT_NOTIFY_LANGUAGE": "zh_Hans"})
    done = subprocess.run([SHIM_CMD, "notify", "switch-failed", "--detail", "nginx -t failed", "--services",
                           "studio video"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    (body,) = webhook.wait_for("cli", 1)
    assert body["title"] == "studio和video：切换失败" and body["message"] == "nginx -t failed"  # Babel's list
    assert body["type"] == "failure"
    dead = clean_env({"MAINT_NOTIFY_URLS": f"json://127.0.0.1:{free_port()}/x"})
    done = subprocess.run([SHIM_CMD, "notify", "start"], env=dead, cwd=tmp_path, capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 1 and done.stderr.count("failed") == 1, done.stderr


@pytest.mark.e2e
def test_bad_notify_settings_exit_2_naming_the_setting(tmp_path: Path) -> None:
    for name, value in (("MAINT_NOTIFY_URLS", "not a url"), ("MAINT_NOTIFY_LANGUAGE", "xx-nope")):
        done = subprocess.run([SHIM_CMD, "check"], env=clean_env({name: value}), cwd=tmp_path,
                              capture_output=True, text=True, timeout=30)
        assert done.returncode == 2
        (line,) = done.stderr.splitlines()
        assert line.startswith(f"maintenance-shim: {name}: "), line
        if name == "MAINT_NOTIFY_URLS":
            assert value not in line  # URLs hold tokens: never echoed


def test_a_regional_notify_language_gets_its_languages_catalog() -> None:
    from maintenance_shim.notify import translations_for

    for tag, catalog in (("ja_JP", "ja"), ("zh_TW", "zh_Hant"), ("zh_CN", "zh_Hans"), ("pt_PT", "pt_BR")):
        assert translations_for(tag).gettext("Stalled") == translations_for(catalog).gettext("Stalled"), tag
    assert translations_for("ja_JP").gettext("Stalled") != "Stalled"
