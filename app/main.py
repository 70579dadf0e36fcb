"""Wiring only: Settings -> tracker, catalogs, renderer, responder, admin API, catch-all, CORS."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from datetime import datetime
from typing import TYPE_CHECKING

from starlette.types import ASGIApp

from .i18n import Catalogs
from .progress.tracker import RetryPolicy, Tracker
from .settings.env import SettingsError
from .settings.shim import Settings
from .traffic import Traffic, TrafficTicker, access_log
from .web.branding import BrandError, load_brand
from .web.catchall import DeferredApp, MaintenanceApp, NoStore
from .web.negotiate import LocaleMatcher
from .web.render import Renderer, Service
from .web.responder import Responder

if TYPE_CHECKING:
    from .progress.sources import Follower


def create_tracker(settings: Settings, started: datetime | None = None) -> Tracker:
    """The Tracker for these settings; a duration ETA counts from `started` (default: now). With a state
    dir, the history of recent runs teaches the save-and-reload time."""
    learned = None
    startup = None
    if settings.state_dir is not None:
        from .progress.runs import learn, read_history, read_startup
        from .statedir import HISTORY_FILE

        learned = learn(read_history(settings.state_dir / HISTORY_FILE))
        startup = read_startup(settings.state_dir)
    return Tracker(
        learned=learned,
        first_run=settings.state_dir is not None and "resume_seconds" not in settings.model_fields_set,
        startup_seconds=startup,
        resume_seconds=settings.resume_seconds,
        stall_seconds=settings.stall_seconds,
        retry=RetryPolicy(settings.retry_after_min, settings.retry_after_max, settings.retry_after_unknown),
        static_deadline=settings.eta_deadline(started or datetime.now().astimezone()),
    )


def create_app(settings: Settings, tracker: Tracker | None = None) -> ASGIApp:
    """The whole shim as one ASGI app, for every listener of `settings`."""
    tracker = tracker or create_tracker(settings)
    tracker.reserve_nodes(settings.source_nodes)  # configured nodes are never crowded out by pushes
    listeners = settings.listeners
    services = {item.port: Service(item.service, item.kind) for item in listeners}
    catalogs = Catalogs(settings.languages)
    try:
        brand = load_brand(settings)
        renderer = Renderer(
            catalogs,
            settings.languages,
            {locale: settings.message_for(locale) for locale in settings.languages},
            settings.lang_cookie,
            brand=brand,
        )
        renderer.check(tracker.snapshot(), list(services.values()))
    except BrandError as error:  # a bad logo, colour, zone or template stops start-up, never a request
        raise SettingsError([str(error)]) from None
    responder = Responder(
        tracker=tracker,
        renderer=renderer,
        matcher=LocaleMatcher(settings.languages, settings.default_language),
        services=services,
        default_service=services[listeners[0].port],
        cookie_name=settings.lang_cookie,
        json_paths=settings.json_paths,
        sdk_retry_max_seconds=settings.sdk_retry_max_seconds,
        reason_phrase=settings.reason_phrase,
    )
    secret = settings.admin_token.get_secret_value() if settings.admin_token else None
    traffic = Traffic() if settings.metrics else None
    notifier = None
    if settings.notify_urls:
        from .notify import Notifier

        notifier = Notifier(settings.notify_urls, settings.notify_locale, [item.service for item in listeners])

    def build_admin() -> ASGIApp:
        from .web.admin import create_admin

        return NoStore(create_admin(responder, secret, traffic=traffic))

    admin = DeferredApp(build_admin)

    @asynccontextmanager
    async def lifespan() -> AsyncIterator[None]:
        admin.start()
        followers: list[Follower] = []
        if settings.configured_sources:
            from .progress.sources import Context
            from .progress.sources import followers as source_followers

            # One follower per entry of every configured source; a NODE=PATH entry's updates carry its node.
            followers = source_followers(settings, Context(tracker.report, tracker.notice, settings.stall_seconds))
        tasks = [asyncio.create_task(follower.run()) for follower in followers]
        watcher = None
        if settings.state_dir is not None:
            from .progress.runs import RunWatcher

            watcher = RunWatcher(settings.state_dir, tracker)
            tasks.append(asyncio.create_task(watcher.run()))
        ticker = None
        if traffic is not None:
            ticker = TrafficTicker(traffic, lambda: tracker.run.started_at if tracker.run else None, settings.state_dir)
            tasks.append(asyncio.create_task(ticker.run()))
        notify_watcher = None
        if notifier is not None:
            from .notify import NotifyWatcher

            notify_watcher = NotifyWatcher(tracker, notifier)
            tasks.append(asyncio.create_task(notify_watcher.run()))
            if settings.state_dir is None:  # not run by the scripts, which notify the start themselves
                notifier.event("start")
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with suppress(asyncio.CancelledError):
                    await task
            if watcher is not None:
                watcher.close()
            if ticker is not None:
                ticker.close()
            if notify_watcher is not None and notifier is not None:
                notify_watcher.poll_once()  # a last look: the trainer may have exited just before the stop
                await asyncio.to_thread(notifier.close, 5.0)

    admin_address = settings.admin_address
    return MaintenanceApp(
        admin=admin,
        admin_port=admin_address.port if admin_address is not None and admin_address.path is None else None,
        admin_socket=admin_address is not None and admin_address.path is not None,
        responder=responder,
        health_paths=settings.health_paths,
        lifespan=lifespan,
        cors_origins=settings.cors_origins,
        traffic=traffic,
        observe=access_log(settings.access_log, settings.access_log_sample),
    )
