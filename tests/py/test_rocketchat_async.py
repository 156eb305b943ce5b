"""rcsim against pypi `rocketchat-async` 4.3.0 (DDP over `websockets` 10.4).

What the library needs (protocol doc 6.3, 2, 3):
- it sends `connect` and does not wait for `connected`; `login` (password digest or
  resume) must get a `result` with `result.id`;
- `rooms/get` with no params must return a list of rooms with `_id` and `t`;
- it subscribes with `["GENERAL", {"useCollection": false, "args": []}]` and never waits
  for `ready`; it only handles `changed` frames, keyed by `collection`, and reads
  `fields.args[0]` as the message (`_id`, `rid`, `tmid`, `u._id`, `msg`, `t`, ...).

Synchronisation: the library ignores `ready`, so after subscribing each test makes one
more DDP method call and waits for its `result`. The real server handles one connection's
frames in order (doc 2.3), so once that result is in, the `sub` has been processed and the
REST post that follows must be delivered. Every wait has a timeout.

Also covered: the library's DDP writes `sendMessage`, `setReaction` and the
`stream-notify-room` method (typing), its `<uid>/rooms-changed` subscription, and its
answer to the server's heartbeat ping (with `--heartbeat-ms 300`).

The dispatcher runs with verbose=True: its Outgoing/Incoming frame log is printed in the
captured stdout of a failing test.

REST logins in this module: bob (poster), alice (token for the resume test) = 2.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import uuid

import requests
import websockets
from rocketchat_async import RocketChat

from conftest import DEMO_PASSWORDS, HTTP_TIMEOUT_S

WAIT_S = 10
ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


async def waited(aw, what: str):
    """asyncio.wait_for with WAIT_S, failing with a readable message instead of a bare TimeoutError."""
    try:
        return await asyncio.wait_for(aw, WAIT_S)
    except asyncio.TimeoutError:
        raise AssertionError(f"timed out after {WAIT_S}s waiting for {what}") from None


def post_as(rcsim, creds: dict, text: str) -> dict:
    """POST /api/v1/chat.postMessage into GENERAL with plain REST (doc 1.8)."""
    r = requests.post(
        rcsim.api("chat.postMessage"),
        json={"roomId": "GENERAL", "text": text},
        headers={"X-User-Id": creds["userId"], "X-Auth-Token": creds["authToken"]},
        timeout=HTTP_TIMEOUT_S,
    )
    assert r.status_code == 200, f"chat.postMessage: HTTP {r.status_code} {r.text}"
    body = r.json()
    assert body.get("success") is True, body
    assert isinstance(body.get("ts"), int), f"chat.postMessage ts must be epoch ms: {body}"
    msg = body["message"]
    assert msg["rid"] == "GENERAL" and msg["msg"] == text, body
    assert ISO_DATE.match(msg.get("ts", "")), f"REST message.ts must be an ISO string: {body}"
    return msg


async def _close(rc: RocketChat) -> None:
    for name in ("dispatch_task", "_ws_connection_task"):
        task = getattr(rc, name, None)
        if task is not None and not task.done():
            task.cancel()
    for name in ("dispatch_task", "_ws_connection_task"):
        task = getattr(rc, name, None)
        if task is not None:
            try:
                await asyncio.wait_for(task, WAIT_S)
            except BaseException:  # cancelled, or the connection error it ended with
                pass


def test_password_login_channels_and_room_messages(rcsim):
    bob = rcsim.rest_login("bob", DEMO_PASSWORDS["bob"])
    text = f"hello {uuid.uuid4().hex[:8]}"

    async def scenario():
        rc = RocketChat(verbose=True)
        try:
            await asyncio.wait_for(rc.start(rcsim.ws_url, "alice", DEMO_PASSWORDS["alice"]), WAIT_S)
            assert isinstance(rc.user_id, str) and len(rc.user_id) == 17, rc.user_id

            channels = await asyncio.wait_for(rc.get_channels(), WAIT_S)
            assert ("GENERAL", "c") in channels, channels

            received: asyncio.Queue = asyncio.Queue()

            def on_message(channel_id, sender_id, msg_id, thread_id, msg, qualifier, unread, repeated):
                received.put_nowait(
                    dict(channel_id=channel_id, sender_id=sender_id, msg_id=msg_id, thread_id=thread_id,
                         msg=msg, qualifier=qualifier, unread=unread, repeated=repeated)
                )

            sub_id = await asyncio.wait_for(rc.subscribe_to_channel_messages("GENERAL", on_message), WAIT_S)
            assert sub_id
            # `<uid>/rooms-changed` with params [event, false]; callback gets (args[1]._id, args[1].t).
            room_changes: asyncio.Queue = asyncio.Queue()
            await asyncio.wait_for(
                rc.subscribe_to_channel_changes(lambda rid, t: room_changes.put_nowait((rid, t))), WAIT_S
            )
            # Barrier: a method result after the subs (see module docstring).
            await asyncio.wait_for(rc.get_channels(), WAIT_S)

            posted = await asyncio.to_thread(post_as, rcsim, bob, text)

            event = await waited(received.get(), "the stream-room-messages event for the REST post")
            assert event == dict(
                channel_id="GENERAL", sender_id=bob["userId"], msg_id=posted["_id"], thread_id=None,
                msg=text, qualifier=None, unread=False, repeated=False,
            ), event
            # A new message updates the room for every member: rooms-changed ["updated", room] (doc 3.4, 7.6).
            assert await waited(room_changes.get(), "rooms-changed for GENERAL") == ("GENERAL", "c")
            await asyncio.wait_for(rc.unsubscribe(sub_id), WAIT_S)
        finally:
            await _close(rc)

    asyncio.run(scenario())


def test_resume_with_rest_token_and_raw_message_shape(rcsim):
    alice = rcsim.rest_login("alice", DEMO_PASSWORDS["alice"])
    text = f"raw {uuid.uuid4().hex[:8]}"

    async def scenario():
        rc = RocketChat(verbose=True)
        try:
            # A REST-issued token resumes over DDP (doc 3.1).
            await asyncio.wait_for(rc.resume(rcsim.ws_url, "alice", alice["authToken"]), WAIT_S)
            assert rc.user_id == alice["userId"]

            raw_channels = await asyncio.wait_for(rc.get_channels_raw(), WAIT_S)
            assert isinstance(raw_channels, list), raw_channels
            general = [r for r in raw_channels if r.get("_id") == "GENERAL"]
            assert general and general[0].get("t") == "c" and general[0].get("name") == "general", raw_channels

            received: asyncio.Queue = asyncio.Queue()
            sub_id = await asyncio.wait_for(
                rc.subscribe_to_channel_messages_raw("GENERAL", received.put_nowait), WAIT_S
            )
            await asyncio.wait_for(rc.get_channels(), WAIT_S)  # barrier

            # alice posts herself this time, with the token she resumed with.
            posted = await asyncio.to_thread(post_as, rcsim, alice, text)

            msg = await waited(received.get(), "the raw stream-room-messages event")
            assert msg["_id"] == posted["_id"], msg
            assert msg["rid"] == "GENERAL" and msg["msg"] == text, msg
            assert msg["u"]["_id"] == alice["userId"] and msg["u"]["username"] == "alice", msg
            # DDP is EJSON: dates inside stream payloads are {"$date": <ms number>} (doc intro, 5.1).
            for key in ("ts", "_updatedAt"):
                assert isinstance(msg.get(key), dict) and set(msg[key]) == {"$date"}, f"{key}: {msg}"
                assert isinstance(msg[key]["$date"], int), f"{key}: {msg}"
            await asyncio.wait_for(rc.unsubscribe(sub_id), WAIT_S)
        finally:
            await _close(rc)

    asyncio.run(scenario())


def test_server_heartbeat_ping_answered_by_library_pong(rcsim_factory):
    """The server pings an idle connection (`{"msg":"ping"}`, no id, doc 2.2); the library
    answers `{"msg":"pong"}` without an id (doc 6.3) and the connection must stay up."""
    sim = rcsim_factory("--heartbeat-ms", "300")

    async def scenario():
        rc = RocketChat(verbose=True)
        try:
            await asyncio.wait_for(rc.start(sim.ws_url, "carol", DEMO_PASSWORDS["carol"]), WAIT_S)

            pongs: asyncio.Queue = asyncio.Queue()
            call_method = rc._dispatcher.call_method

            async def spy(msg, msg_id=None):
                if msg.get("msg") == "pong":
                    pongs.put_nowait(msg)
                return await call_method(msg, msg_id)

            rc._dispatcher.call_method = spy  # observe the library's own pong replies

            # Stay idle: two server pings, each answered by the library. After the second
            # one the first pong has evidently been accepted (the socket was not closed).
            for _ in range(2):
                pong = await waited(pongs.get(), "a server ping answered by the library")
                assert pong == {"msg": "pong"}, pong

            channels = await asyncio.wait_for(rc.get_channels(), WAIT_S)
            assert ("GENERAL", "c") in channels, channels
        finally:
            await _close(rc)

    asyncio.run(scenario())


class RawDdp:
    """A bare DDP connection (plain `websockets`), used only as an independent observer."""

    def __init__(self, ws):
        self.ws = ws
        self.n = 0

    @classmethod
    async def login(cls, url: str, username: str, password: str) -> "RawDdp":
        ws = await websockets.connect(url)
        self = cls(ws)
        await self.send({"msg": "connect", "version": "1", "support": ["1", "pre2", "pre1"]})
        await self.expect(lambda m: m.get("msg") == "connected")
        digest = hashlib.sha256(password.encode()).hexdigest()
        res = await self.call("login", {"user": {"username": username}, "password": {"digest": digest, "algorithm": "sha-256"}})
        assert "result" in res, res
        return self

    async def send(self, obj: dict) -> None:
        await self.ws.send(json.dumps(obj))

    async def expect(self, pred, what: str = "frame") -> dict:
        async def loop():
            while True:
                m = json.loads(await self.ws.recv())
                if m.get("msg") == "ping":
                    await self.send({"msg": "pong", **({"id": m["id"]} if "id" in m else {})})
                if pred(m):
                    return m
        try:
            return await asyncio.wait_for(loop(), WAIT_S)
        except asyncio.TimeoutError:
            raise AssertionError(f"observer: timed out after {WAIT_S}s waiting for {what}") from None

    async def call(self, method: str, *params) -> dict:
        self.n += 1
        mid = f"obs-{self.n}"
        await self.send({"msg": "method", "method": method, "params": list(params), "id": mid})
        return await self.expect(lambda m: m.get("msg") == "result" and m.get("id") == mid, f"result of {method}")

    async def sub(self, name: str, *params) -> None:
        self.n += 1
        sid = f"obs-{self.n}"
        await self.send({"msg": "sub", "id": sid, "name": name, "params": list(params)})
        m = await self.expect(
            lambda m: (m.get("msg") == "ready" and sid in m.get("subs", [])) or (m.get("msg") == "nosub" and m.get("id") == sid),
            f"ready for {name} {params}",
        )
        assert m["msg"] == "ready", f"sub {name} {params} refused: {m}"

    async def close(self) -> None:
        await self.ws.close()


async def _alice_with_room_messages(rcsim):
    """alice logged in through the library, subscribed to GENERAL messages (typed callback)."""
    rc = RocketChat(verbose=True)
    await waited(rc.start(rcsim.ws_url, "alice", DEMO_PASSWORDS["alice"]), "password login")
    received: asyncio.Queue = asyncio.Queue()
    await waited(rc.subscribe_to_channel_messages("GENERAL", lambda *a: received.put_nowait(a)), "sub sent")
    await waited(rc.get_channels(), "barrier rooms/get")  # see module docstring
    return rc, received


async def _send_and_receive(rc, received, text):
    """`send_message` (DDP `sendMessage`, awaited by the library) and its room-messages echo."""
    await waited(rc.send_message(text, "GENERAL"), "the sendMessage result")
    channel_id, sender_id, msg_id, thread_id, msg, qualifier, unread, repeated = await waited(
        received.get(), "the stream-room-messages event for sendMessage"
    )
    assert (channel_id, sender_id, thread_id, msg, qualifier, repeated) == (
        "GENERAL", rc.user_id, None, text, None, False
    )
    assert len(msg_id) == 12, msg_id  # the library picks the _id (12 hex chars); the server keeps it
    return msg_id


def test_send_message_over_ddp(rcsim):
    async def scenario():
        rc, received = await _alice_with_room_messages(rcsim)
        try:
            await _send_and_receive(rc, received, f"ddp {uuid.uuid4().hex[:8]}")
        finally:
            await _close(rc)

    asyncio.run(scenario())


def test_send_reaction_resends_message(rcsim):
    """`send_reaction` sends `setReaction [emoji, msgId]` and does not wait (doc 6.3). The real
    server resends the whole message on stream-room-messages after a reaction (doc 3.4), which
    the library's typed callback reports with repeated=True."""

    async def scenario():
        rc, received = await _alice_with_room_messages(rcsim)
        try:
            msg_id = await _send_and_receive(rc, received, f"react {uuid.uuid4().hex[:8]}")
            await waited(rc.send_reaction(msg_id, ":+1:"), "setReaction sent")
            again = await waited(received.get(), "the message resent after setReaction")
            assert again[2] == msg_id and again[7] is True, f"expected the reacted message with repeated=True: {again}"
        finally:
            await _close(rc)

    asyncio.run(scenario())


def test_send_typing_event_reaches_room_members(rcsim):
    """`send_typing_event` calls the `stream-notify-room` method with
    `["GENERAL/user-activity", "alice", ["user-typing"], {}]` and waits for its result (doc 6.3).
    Other members subscribed to `stream-notify-room` `GENERAL/user-activity` get those args
    (doc 3.4); bob observes over a bare DDP connection."""

    async def scenario():
        rc = RocketChat(verbose=True)
        bob = None
        try:
            await waited(rc.start(rcsim.ws_url, "alice", DEMO_PASSWORDS["alice"]), "password login")
            bob = await RawDdp.login(rcsim.ws_url, "bob", DEMO_PASSWORDS["bob"])
            await bob.sub("stream-notify-room", "GENERAL/user-activity", {"useCollection": False, "args": []})
            await waited(rc.send_typing_event("GENERAL"), "the result of the stream-notify-room method")
            ev = await bob.expect(
                lambda m: m.get("msg") == "changed" and m.get("collection") == "stream-notify-room",
                "the stream-notify-room user-activity event",
            )
            assert ev["id"] == "id", ev
            assert ev["fields"] == {"eventName": "GENERAL/user-activity", "args": ["alice", ["user-typing"], {}]}, ev
        finally:
            if bob is not None:
                await bob.close()
            await _close(rc)

    asyncio.run(scenario())
