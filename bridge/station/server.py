"""``ecg-bridge station``: a web central station, Starlette under uvicorn, fed by paho-mqtt.

Why this way: the station needs MQTT's persistent, authenticated, TLS
connections and the payload validation of :mod:`bridge` (the same code as
``listen`` and ``forward``), and the strips drawn by matplotlib; a page
speaking MQTT over Mosquitto's WebSocket listener would need a second broker
listener, broker credentials in every browser, and its own validation in
JavaScript. So one Python process subscribes (paho, its own thread), keeps
the state (:class:`~bridge.station.state.StationState`), and pushes JSON
events to the pages over one WebSocket each (batched every 100 ms); pages draw
on a canvas with a few hundred lines of JavaScript shipped in the package (no
CDN, no framework). Acknowledgements are POSTed by the page and published by
the station on ``ecg/<device>/acks`` (QoS 1); they reach the page back, and
every other station, from the broker.

Security: binds to 127.0.0.1 by default. ``--host`` exposes it; then a token
is required (``--token`` or ``ECG_STATION_TOKEN``, else a random one is made
and printed): ``http://host:8080/?token=...`` sets a cookie for the page.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import json
import logging
import secrets
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from bridge._conn import connect_blocking, make_client, parse_broker_url
from bridge.errors import EcgEdgeError, PublishError
from bridge.schema import encode
from bridge.station.state import StationState
from bridge.strip import Strip, StripFetcher
from bridge.wave import Ack, acks_topic

log = logging.getLogger("bridge.station")

STATIC = Path(__file__).resolve().parent / "static"
COOKIE = "ecg_station_token"
ENV_TOKEN = "ECG_STATION_TOKEN"
FLUSH_S = 0.1  # live samples are sent to a page in batches of 100 ms
_QUEUE = 2000  # events waiting for one page; beyond, its live samples are dropped


def is_loopback(host: str) -> bool:
    """True for 127.0.0.1, ::1 and localhost."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Hub:
    """Fan events out to the connected pages; called from the MQTT thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queues: set[asyncio.Queue[dict[str, Any]]] = set()
        self.dropped = 0

    def publish(self, events: list[dict[str, Any]]) -> None:
        if events and self.queues:
            self.loop.call_soon_threadsafe(self._put, events)

    def _put(self, events: list[dict[str, Any]]) -> None:
        for q in list(self.queues):
            for e in events:
                if q.qsize() >= _QUEUE and e["t"] == "live":
                    self.dropped += 1
                    continue
                q.put_nowait(e)


class Station:
    """The MQTT side: subscribe to every device, feed the state, publish acknowledgements."""

    def __init__(
        self,
        broker_url: str,
        *,
        name: str = "station",
        device: str = "+",
        ca_file: str | Path | None = None,
        cert_file: str | Path | None = None,
        key_file: str | Path | None = None,
    ) -> None:
        self.name = name
        self.broker = parse_broker_url(broker_url)
        self.state = StationState()
        self.hub: Hub | None = None
        self._subs = [
            (f"ecg/{device}/status", 1),
            (f"ecg/{device}/alerts", 1),
            (f"ecg/{device}/live", 0),
            (f"ecg/{device}/acks", 1),
        ]
        self._client = make_client(
            self.broker,
            f"ecg-station-{name}-{uuid.uuid4().hex[:6]}",
            ca_file=ca_file,
            cert_file=cert_file,
            key_file=key_file,
        )
        self._client.reconnect_delay_set(1, 30)
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self.connected = threading.Event()
        self._fetcher = StripFetcher(self._client)

    def _on_connect(self, client, userdata, flags, reason_code, properties):  # type: ignore[no-untyped-def]
        if not reason_code.is_failure:
            client.subscribe(self._subs)
            self.connected.set()

    def _on_message(self, client, userdata, msg):  # type: ignore[no-untyped-def]
        events = self.state.handle(msg.topic, msg.payload)
        if self.hub is not None:
            self.hub.publish(events)

    def start(self) -> Station:
        connect_blocking(self._client, self.broker)
        self._client.loop_start()
        return self

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def strip(self, alert_id: str, timeout_s: float = 5.0) -> Strip | None:
        """The strip of ``alert_id``: cached, or fetched from the broker (blocks)."""
        strip = self.state.strip(alert_id)
        if strip is None:
            alarm = self.state.alarm(alert_id)
            device = alarm["device_id"] if alarm else "+"
            strip = self._fetcher.get(device, alert_id, timeout_s)
            if strip is not None:
                self.state.keep_strip(strip)
        return strip

    def acknowledge(self, alert_id: str, device_id: str, by: str = "") -> Ack:
        """Publish an acknowledgement of ``alert_id`` (QoS 1); it comes back to every station."""
        ack = Ack(alert_id, device_id, self.name, by[:64])
        info = self._client.publish(acks_topic(device_id), encode(ack.to_json()), qos=1)
        if info.rc != 0:
            raise PublishError(
                f"Cannot publish the acknowledgement: not connected to {self.broker}"
            )
        return ack


def create_app(station: Station, *, token: str | None = None):  # type: ignore[no-untyped-def]
    """The Starlette application of ``station`` (``token``: required on every request)."""
    try:
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import FileResponse, JSONResponse, Response
        from starlette.routing import Mount, Route, WebSocketRoute
        from starlette.staticfiles import StaticFiles
        from starlette.websockets import WebSocket
    except ImportError:
        raise EcgEdgeError("The station needs its extra: pip install 'ecg-edge[station]'") from None

    def allowed(conn: Any) -> bool:
        if token is None:
            return True
        given = (
            conn.query_params.get("token")
            or conn.cookies.get(COOKIE)
            or conn.headers.get("authorization", "").removeprefix("Bearer ").strip()
        )
        return bool(given) and hmac.compare_digest(str(given), token)

    def refused() -> Response:
        return Response("a token is needed: open the URL the station printed\n", status_code=401)

    async def index(request: Request) -> Response:
        if not allowed(request):
            return refused()
        response = FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})
        if token is not None:
            response.set_cookie(COOKIE, token, httponly=True, samesite="strict")
        return response

    async def snapshot(request: Request) -> Response:
        if not allowed(request):
            return refused()
        return JSONResponse(station.state.snapshot())

    async def ack(request: Request) -> Response:
        if not allowed(request):
            return refused()
        try:
            body = await request.json()
            alert_id, device_id = str(body["alert_id"]), str(body["device_id"])
            by = str(body.get("by", ""))
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"error": "expected {alert_id, device_id, by}"}, status_code=400)
        try:
            sent = station.acknowledge(alert_id, device_id, by)
        except EcgEdgeError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse({"ack_id": sent.ack_id})

    async def strip_png(request: Request) -> Response:
        if not allowed(request):
            return refused()
        alert_id = request.path_params["alert_id"]
        try:
            strip = await asyncio.to_thread(station.strip, alert_id)
        except EcgEdgeError as exc:
            return Response(f"{exc}\n", status_code=502)
        if strip is None:
            return Response(f"no strip for {alert_id} (yet)\n", status_code=404)
        from bridge.strip_png import strip_png as draw

        png = await asyncio.to_thread(draw, strip, dpi=110)
        return Response(png, media_type="image/png", headers={"Cache-Control": "max-age=3600"})

    async def events(ws: WebSocket) -> None:
        if not allowed(ws):
            await ws.close(code=4401)
            return
        await ws.accept()
        assert station.hub is not None
        q: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        station.hub.queues.add(q)

        async def send() -> None:
            await ws.send_text(json.dumps(station.state.snapshot(), separators=(",", ":")))
            while True:
                batch = [await q.get()]
                if batch[0]["t"] == "live":  # samples are batched; alarms go at once
                    await asyncio.sleep(FLUSH_S)
                while not q.empty():
                    batch.append(q.get_nowait())
                await ws.send_text(json.dumps({"t": "batch", "e": batch}, separators=(",", ":")))

        async def receive() -> None:  # the page sends nothing; this notices it is gone
            while True:
                await ws.receive_text()

        tasks = [asyncio.create_task(send()), asyncio.create_task(receive())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            station.hub.queues.discard(q)

    async def health(request: Request) -> Response:
        pages = len(station.hub.queues) if station.hub else 0
        return JSONResponse(
            {"mqtt": station.connected.is_set(), "pages": pages, **station.state.counts}
        )

    @contextlib.asynccontextmanager
    async def lifespan(app):  # type: ignore[no-untyped-def]
        station.hub = Hub(asyncio.get_running_loop())
        yield

    return Starlette(
        routes=[
            Route("/", index),
            Route("/api/snapshot", snapshot),
            Route("/api/ack", ack, methods=["POST"]),
            Route("/api/health", health),
            Route("/strip/{alert_id:str}.png", strip_png),
            WebSocketRoute("/ws", events),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ],
        lifespan=lifespan,
    )


def serve(
    broker_url: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    token: str | None = None,
    name: str = "station",
    device: str = "+",
    ca_file: str | Path | None = None,
    cert_file: str | Path | None = None,
    key_file: str | Path | None = None,
    announce=print,  # type: ignore[no-untyped-def]
) -> None:
    """Run the station until Ctrl-C."""
    try:
        import uvicorn
    except ImportError:
        raise EcgEdgeError("The station needs its extra: pip install 'ecg-edge[station]'") from None
    if token is None and not is_loopback(host):
        token = secrets.token_urlsafe(18)
        announce(f"station: --host {host} is not loopback: a token is required (generated)")
    station = Station(
        broker_url, name=name, device=device, ca_file=ca_file, cert_file=cert_file,
        key_file=key_file,
    ).start()  # fmt: skip
    app = create_app(station, token=token)
    shown = f"[{host}]" if ":" in host else host
    query = f"/?token={token}" if token else "/"
    announce(f"station {name}: http://{shown}:{port}{query} (MQTT {station.broker})")
    t0 = time.monotonic()
    try:
        uvicorn.run(
            app,
            host=host,
            port=port,
            log_level="warning",
            ws="websockets-sansio",
            timeout_graceful_shutdown=3,
        )
    finally:
        station.stop()
        log.info("station ran %.0f s", time.monotonic() - t0)
