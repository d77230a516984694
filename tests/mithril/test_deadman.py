"""The dead-man switch of a spot bid: its expiring API key, and the watcher its startup script starts.

Emulated instances run no startup script, so the watcher is taken out of the
script a bid really carried and run here, against the emulator, with a lease
of seconds.
"""

from __future__ import annotations

import json
import os
import shlex
import stat
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from mithril_harness import wait_for
from sflow.mithril import deadman, startup
from sflow.mithril.emulator import start_emulator
from sflow.mithril.fetch import Settings, load_settings
from sflow.mithril.worker import Worker

MAIN_KEY = "fkey_deadman_main"


@pytest.fixture
def emulator():
    emu = start_emulator(api_key=MAIN_KEY, tick=0.2, startup=0.3)
    yield emu
    emu.close()


def _reports(worker: Worker, kinds: set[str], timeout: float = 15.0) -> list:
    got, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline and not kinds <= {r[0] for r in got}:
        got += worker.take_reports()
        time.sleep(0.02)
    return got


def _settings(url: str, **switch) -> Settings:
    return Settings(api_url=url, poll_seconds=0.1,
                    deadman={**deadman.DEFAULTS, "lease_seconds": 3.0, "lease_boot_seconds": 3.0,
                             "deadman_check_seconds": 0.1, **switch})


def _place(emulator, tmp_path, settings: Settings, name: str, limit_seconds: float | None = 3600.0):
    """A bid placed as the controller places one: its key first, then the bid carrying the key.
    Answers (worker, idempotency key, spec, bid id)."""
    read, write = os.pipe()
    worker = Worker(str(tmp_path), settings, MAIN_KEY, write)
    watch = deadman.plan_for(settings, limit_seconds)
    spec = {"name": name, "region": "us-central1-a", "type_id": emulator.market.catalog.find("8xh100").fid,
            "limit_cents": 900, "quantity": 1,
            "deadman": {"name": f"sflow-deadman-{name}", "watch": watch, "secret": None,
                        "expires": time.time() + deadman.key_lifetime(settings, watch)}}
    worker.create("idem-" + name, spec)
    (made,) = [r for r in _reports(worker, {"key_made"}) if r[0] == "key_made"]
    spec["deadman"]["secret"] = made[3]
    worker.create("idem-" + name, spec)
    (created,) = [r for r in _reports(worker, {"created"}) if r[0] == "created"]
    return worker, "idem-" + name, spec, created[2], (read, write)


def _watcher_from(script: str, tmp_path, lease: str) -> tuple[str, str]:
    """The watcher and its settings as the startup script writes them, the lease moved to ``lease``."""
    source = script.split(f"<<'{deadman.MARKER}'\n", 1)[1].split(f"{deadman.MARKER}\n", 1)[0]
    line = next(line for line in script.splitlines() if line.strip().startswith("(umask 077"))
    words = shlex.split(line.split("printf '%s\\n' ", 1)[1].split(" >", 1)[0])
    conf = json.loads(words[0])
    conf["lease_path"] = lease
    directory = tmp_path / "deadman"
    directory.mkdir(mode=0o700)
    watch, conf_path = directory / "watch.py", directory / "conf.json"
    watch.write_text(source)
    conf_path.touch(mode=0o600)
    conf_path.write_text(json.dumps(conf))
    return str(watch), str(conf_path)


def _status(emulator, bid_id: str) -> str:
    with emulator.service.lock:
        return emulator.market.bids[bid_id].status


def test_the_watcher_keeps_the_bid_while_the_lease_is_renewed_and_deletes_it_once_it_runs_out(emulator, tmp_path):
    settings = _settings(emulator.url)
    worker, _, spec, bid_id, pipe = _place(emulator, tmp_path, settings, "sflow-12")
    script = emulator.market.bids[bid_id].launch_specification["startup_script"]
    assert spec["deadman"]["secret"] in script  # the bid carries its own key, not the account's
    assert MAIN_KEY not in script
    lease = tmp_path / "lease"
    watch, conf = _watcher_from(script, tmp_path, str(lease))
    stop = threading.Event()

    def renew():
        while not stop.is_set():
            lease.touch()
            stop.wait(0.1)

    renewer = threading.Thread(target=renew)
    renewer.start()
    proc = subprocess.Popen([sys.executable, watch, conf], stderr=subprocess.PIPE, text=True)
    try:
        # Renewed: the bid stays through several lifetimes of the lease (and the boot window).
        for _ in range(30):
            time.sleep(0.3)
            assert proc.poll() is None, proc.stderr.read()
            assert _status(emulator, bid_id) != "Terminated"
        stop.set()
        renewer.join()
        # No longer renewed (the machine running sflow died): the instance deletes its bid.
        assert wait_for(lambda: _status(emulator, bid_id) == "Terminated"), "the bid outlived its lease"
        assert proc.wait(timeout=30) == 0
        log = proc.stderr.read()
    finally:
        stop.set()
        if proc.poll() is None:
            proc.kill()
    assert "the lease ran out: deleting bid sflow-12" in log
    assert spec["deadman"]["secret"] not in log
    worker.close()
    for fd in pipe:
        os.close(fd)


def test_the_watcher_deletes_the_bid_at_its_deadline_however_renewed(emulator, tmp_path):
    settings = _settings(emulator.url, deadline_margin_seconds=1.0)
    worker, _, _, bid_id, pipe = _place(emulator, tmp_path, settings, "sflow-13", limit_seconds=1.0)
    script = emulator.market.bids[bid_id].launch_specification["startup_script"]
    lease = tmp_path / "lease"
    watch, conf = _watcher_from(script, tmp_path, str(lease))
    proc = subprocess.Popen([sys.executable, watch, conf], stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: lease.touch() or _status(emulator, bid_id) == "Terminated")
        assert proc.wait(timeout=30) == 0
        assert "the deadline passed: deleting bid sflow-13" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    worker.close()
    for fd in pipe:
        os.close(fd)


def test_a_bid_that_is_gone_takes_its_key_with_it(emulator, tmp_path):
    settings = _settings(emulator.url)
    worker, key, spec, bid_id, pipe = _place(emulator, tmp_path, settings, "sflow-14")
    (made,) = [k for k in emulator.service.account.api_keys.values() if k.name == "sflow-deadman-sflow-14"]
    assert made.deactivated_at is None and made.expires_at == pytest.approx(spec["deadman"]["expires"], abs=1e-3)
    worker.delete(key, bid_id, spec)
    _reports(worker, {"deleted"})
    worker.revoke_key(key, made.fid, made.name)
    (revoked,) = [r for r in _reports(worker, {"key_revoked"}) if r[0] == "key_revoked"]
    assert revoked[1] == key and made.deactivated_at is not None
    worker.revoke_key(key, made.fid, made.name)  # again (a restarted controller): already gone, done
    assert [r[0] for r in _reports(worker, {"key_revoked"})] == ["key_revoked"]
    # A revoked key opens nothing: the instance's watcher gives up instead of deleting anything.
    answer = httpx.get(emulator.url + "/v2/projects", headers={"Authorization": f"Bearer {made.secret}"})
    assert answer.status_code == 401
    worker.close()
    for fd in pipe:
        os.close(fd)


def test_a_key_whose_answer_was_lost_is_found_by_its_name_and_revoked(emulator, tmp_path):
    settings = _settings(emulator.url)
    read, write = os.pipe()
    worker = Worker(str(tmp_path), settings, MAIN_KEY, write)
    with httpx.Client(base_url=emulator.url, headers={"Authorization": f"Bearer {MAIN_KEY}"}) as http:
        soon = (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat()
        lost = http.post("/v2/api-keys", json={"name": "sflow-deadman-x", "expires_at": soon}).json()
    worker.revoke_key("x", None, "sflow-deadman-x")
    _reports(worker, {"key_revoked"})
    assert emulator.service.account.api_keys[lost["fid"]].deactivated_at is not None
    worker.close()
    os.close(read)
    os.close(write)


def test_the_emulator_enforces_an_api_keys_expiry(emulator):
    main = {"Authorization": f"Bearer {MAIN_KEY}"}
    with httpx.Client(base_url=emulator.url) as http:
        past = http.post("/v2/api-keys", headers=main, json={"name": "old", "expires_at": "2000-01-01T00:00:00Z"})
        assert past.status_code == 400
        soon = (datetime.now(timezone.utc) + timedelta(seconds=1)).isoformat()
        made = http.post("/v2/api-keys", headers=main, json={"name": "brief", "expires_at": soon})
        assert made.status_code == 201
        body = made.json()
        assert body["secret"].startswith("fkey_") and body["snippet"].endswith("...")
        assert body["secret"] not in json.dumps(http.get("/v2/api-keys", headers=main).json())
        own = {"Authorization": f"Bearer {body['secret']}"}
        assert http.get("/v2/projects", headers=own).status_code == 200
        assert wait_for(lambda: http.get("/v2/projects", headers=own).status_code == 401, timeout=10)
        assert http.delete(f"/v2/api-keys/{body['fid']}", headers=main).status_code == 204
        assert http.delete(f"/v2/api-keys/{body['fid']}", headers=main).status_code == 404


def test_the_switch_is_in_the_script_quoted_and_within_mithrils_limit(tmp_path):
    conf = deadman.watcher_conf(api_url="https://api.example.com", key="fkey_x'$(touch pwned)", project="proj_1",
                                bid_name="sflow-1", nonce="sflow-deadman-k", user="ubuntu",
                                plan=deadman.plan_for(load_settings({}), None), key_expires=2e9)
    text = startup.script(None, conf)
    assert len(text) <= startup.MAX_CHARS
    assert text.index("sflow_deadman") < text.index("SFLOW_PACKAGE=")  # the switch starts before the install
    path = tmp_path / "startup.sh"
    path.write_text(text)
    assert subprocess.run(["bash", "-n", str(path)]).returncode == 0
    # The settings' line run alone writes them back unchanged, into a file only its owner reads.
    line = next(line for line in text.splitlines() if line.strip().startswith("(umask 077"))
    done = subprocess.run(["bash", "-c", f"dir={shlex.quote(str(tmp_path / 'd'))}\n{line.strip()}"], cwd=tmp_path)
    assert done.returncode == 0 and not (tmp_path / "pwned").exists()
    written = tmp_path / "d" / "conf.json"
    assert json.loads(written.read_text()) == conf
    assert stat.S_IMODE(os.stat(written).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tmp_path / "d").st_mode) == 0o700
    # The key is only on that line (printf is bash's own: no command line of a process holds it).
    assert [raw for raw in text.splitlines() if "fkey_x" in raw] == [line]


def test_settings_have_documented_defaults_and_can_turn_the_switch_off():
    on = load_settings({"SFLOW_CONFIG": "/nonexistent"})
    assert on.deadman == deadman.DEFAULTS
    assert load_settings({"SFLOW_CONFIG": "/nonexistent", "SFLOW_MITHRIL_LEASE_SECONDS": "120"}).deadman[
        "lease_seconds"] == 120.0
    assert load_settings({"SFLOW_CONFIG": "/nonexistent", "SFLOW_MITHRIL_DEADMAN": "off"}).deadman is None
    plan = deadman.plan_for(on, None)
    assert plan["run_seconds"] == (deadman.DEFAULTS["unlimited_hours"] * 3600
                                   + deadman.DEFAULTS["deadline_margin_seconds"])
    # An open bid is placed again before its key could expire during the run.
    expires = 1000.0 + deadman.key_lifetime(on, plan)
    assert not deadman.must_rebid(plan, expires, 1000.0)
    assert deadman.must_rebid(plan, expires, 1000.0 + deadman.DEFAULTS["bid_wait_hours"] * 3600 + 400)
