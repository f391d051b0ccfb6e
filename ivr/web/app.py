"""aiohttp app factory. State lives under AppKeys; blocking work never runs on the loop."""

from __future__ import annotations

import asyncio

from aiohttp import web
from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from ivr.agi import timing
from ivr.controller import Controller
from ivr.cooldown.settings import TRIGGERS
from ivr.model import Outcome
from ivr.recordings.service_evidence import EvidenceService
from ivr.recordings.service_search import RecordingSearch
from ivr.spy.service import SpyService
from ivr.web.api import AdminServices, create_api

CONTROLLER = web.AppKey("controller", Controller)
REGISTRY = web.AppKey("registry", CollectorRegistry)


async def healthz(request: web.Request) -> web.Response:
    checks = await request.app[CONTROLLER].health()
    ok = all(checks.values())
    body = {"status": "ok" if ok else "degraded", **{k: "up" if v else "down"
                                                     for k, v in checks.items()}}
    return web.json_response(body, status=200 if ok else 503)


async def metrics(request: web.Request) -> web.Response:
    payload = generate_latest(request.app[REGISTRY])
    return web.Response(body=payload, headers={"Content-Type": "text/plain; version=0.0.4"})


class _ControllerCollector(Collector):
    def __init__(self, controller: Controller):
        self.c = controller

    def collect(self):  # type: ignore[override]
        agi = self.c.agi
        yield GaugeMetricFamily("ivr_agi_sessions_active", "FastAGI sessions in progress",
                                value=agi.active_sessions)
        yield CounterMetricFamily("ivr_agi_sessions", "FastAGI sessions handled",
                                  value=agi.sessions_total)
        yield CounterMetricFamily("ivr_agi_handler_failures",
                                  "FastAGI handler errors sent to the fail-safe path",
                                  value=agi.failures_total)
        yield GaugeMetricFamily("ivr_ami_connected", "1 when logged in to AMI",
                                value=int(self.c.ami.connected))
        yield CounterMetricFamily("ivr_ami_logins", "AMI logins since start",
                                  value=self.c.ami.logins)
        yield GaugeMetricFamily("ivr_calls_active", "Customer calls in progress",
                                value=len(self.c.calls.active))
        outcomes = CounterMetricFamily("ivr_calls_ended", "Customer calls ended, by outcome",
                                       labels=["outcome"])
        for outcome in Outcome:
            outcomes.add_metric([outcome.value], self.c.calls.outcomes[outcome.value])
        yield outcomes
        features = CounterMetricFamily("ivr_operator_features",
                                       "Operator feature codes used (flag: supervisors alerted)",
                                       labels=["feature"])
        used = getattr(self.c, "features", None)
        for name in ("flag", "notice", "escalate", "end_and_refuse",
                     "end_and_refuse_withheld"):
            features.add_metric([name], used.used[name] if used is not None else 0)
        yield features
        live = getattr(self.c, "live", None)
        yield GaugeMetricFamily("ivr_live_calls_followed",
                                "Connected calls whose loudness is being followed",
                                value=len(live.watches) if live is not None else 0)
        acted = CounterMetricFamily("ivr_live_protection",
                                    "Live protection: shouting found and what was done",
                                    labels=["action"])
        for name in ("shout", "soften", "warning", "offer_end", "escalate"):
            acted.add_metric([name], live.counts[name] if live is not None else 0)
        yield acted
        cooldown = getattr(self.c, "cooldown", None)
        started = CounterMetricFamily("ivr_operator_cooldowns",
                                      "Operators paused for a cool-down after a hard call, by "
                                      "the call's first trigger", labels=["trigger"])
        for name in TRIGGERS:
            started.add_metric([name], cooldown.started[name] if cooldown is not None else 0)
        yield started
        yield CounterMetricFamily("ivr_operator_cooldown_lifts",
                                  "Cool-down pauses lifted when over (one per desk)",
                                  value=cooldown.lifted if cooldown is not None else 0)
        statements = CounterMetricFamily("ivr_store_statements",
                                         "Statements sent to the database (an executemany "
                                         "once), by verb and table", labels=["statement"])
        for label, count in sorted(self.c.db.statements.items()):
            statements.add_metric([label], count)
        yield statements
        writer = self.c.db.writer
        yield CounterMetricFamily("ivr_store_write_batches",
                                  "Transactions of the store's writer (queued call-path writes)",
                                  value=writer.batches)
        yield CounterMetricFamily("ivr_store_write_batches_hurried",
                                  "... of them closed before their window: someone waited "
                                  "(or the batch was full)",
                                  value=writer.hurried)
        # For the load bench (bench/load.py): is the loop keeping up, and does it leak tasks.
        # collect() runs in the /metrics handler, on the controller's loop.
        yield GaugeMetricFamily("ivr_asyncio_tasks", "asyncio tasks alive on the event loop",
                                value=len(asyncio.all_tasks()))


def create_app(controller: Controller) -> web.Application:
    app = web.Application(client_max_size=1024 * 1024)
    registry = CollectorRegistry()
    registry.register(_ControllerCollector(controller))
    registry.register(timing.ROUND_TRIPS)
    for metric in (controller.loop_watch.lag, controller.loop_watch.stalls,
                   controller.loop_watch.gc_pauses):
        registry.register(metric)
    Gauge("ivr_up", "The controller process is running", registry=registry).set(1)
    app[CONTROLLER] = controller
    app[REGISTRY] = registry
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.add_subapp("/api/v1", create_api(admin_services(controller)))
    return app


def admin_services(controller: Controller) -> AdminServices:
    recordings = RecordingSearch(
        controller.recording_index, controller.config.recordings_dir,
        country=lambda: controller.settings.current().numbers.country_code)
    return AdminServices(settings=controller.settings, tokens=controller.tokens,
                         audit=controller.audit, calls=controller.calls,
                         blocks=controller.blocks, rules_test=controller.rules.test,
                         recordings=recordings, evidence=EvidenceService(
                             controller.recording_index, controller.recording_chain,
                             controller.config.recordings_dir, audit=controller.audit,
                             calls=controller.calls.store),
                         spy=SpyService(controller.ami.action, controller.calls,
                                        controller.audit, lambda: [
                                            o.endpoint for o in controller.config.operators]))
