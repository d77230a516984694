"""The dead-man switch on a spot bid's instances: the bid deletes itself when sflow stops vouching for it.

A spot bid has no end time in Mithril's API; if the machine running sflow
dies, nothing there can delete it. So every bid's startup script starts a
small watcher on each instance (python3's standard library only) holding an
API key made for that bid alone, which expires by itself. The watcher deletes
its own bid (found by its name and this bid's nonce in its startup script)
when

- the lease runs out: the job's agent touches ``~/.sflow/lease`` on every
  instance every ``lease_renew_seconds`` while sflow is alive; before its
  first touch the lease counts from the watcher's start (``lease_boot_seconds``);
- or the deadline passes: the job's time limit plus ``deadline_margin_seconds``
  since the watcher started, and always before its key expires.

The key is written with the watcher's settings into one file of mode 0600 in
a directory of mode 0700 (``/var/lib/sflow-deadman`` when the script runs as
root); it is never in a command line or a log. The watcher's own log says
what it did and never holds the key.
"""

from __future__ import annotations

import json
import shlex

from sflow.records import NODE_LEASE

LEASE_PATH = "~{user}/" + NODE_LEASE  # the agent touches it as the SSH user, in that user's home
MARKER = "SFLOW_DEADMAN_EOF"

DEFAULTS = {
    "lease_seconds": 600.0,  # the bid outlives the last touch by this much at most
    "lease_renew_seconds": 60.0,  # how often the job's agent touches the lease
    "lease_boot_seconds": 1800.0,  # before the first touch: from the watcher's start
    "deadline_margin_seconds": 1800.0,  # past the job's time limit (start-up, staging, KillWait)
    "unlimited_hours": 168.0,  # the deadline of a job without a time limit (a partition's MaxTime first)
    "bid_wait_hours": 24.0,  # an open bid is placed again after this long, with a fresh key
    "deadman_check_seconds": 15.0,  # how often the watcher looks at the lease
}
KEY_SLACK = 300.0  # the watcher acts this long before its key expires; the key outlives the deadline by it

WATCHER = r'''import json, os, sys, time, urllib.error, urllib.parse, urllib.request
path = sys.argv[1]
with open(path) as f:
    conf = json.load(f)


def log(text):
    print(time.strftime("%Y-%m-%dT%H:%M:%S ") + "sflow deadman: " + text, file=sys.stderr, flush=True)


def first_start():
    mark = os.path.join(os.path.dirname(path), "started")
    try:
        with open(mark) as f:
            return float(f.read())
    except (OSError, ValueError):
        now = time.time()
        with open(mark + ".tmp", "w") as f:
            f.write(repr(now))
        os.replace(mark + ".tmp", mark)
        return now


def call(method, where, query=None):
    url = conf["api_url"].rstrip("/") + where + ("?" + urllib.parse.urlencode(query) if query else "")
    req = urllib.request.Request(url, method=method, headers={
        "Authorization": "Bearer " + conf["key"], "Accept": "application/json", "User-Agent": "sflow-deadman"})
    with urllib.request.urlopen(req, timeout=30) as answer:
        body = answer.read()
    return json.loads(body) if body else None


def my_bids():
    query, found = {"name": conf["bid_name"], "project": conf["project"], "limit": 100}, []
    while True:
        page = call("GET", "/v2/spot/bids", query)
        for bid in page.get("data", []) if isinstance(page, dict) else page:
            script = (bid.get("launch_specification") or {}).get("startup_script") or ""
            if bid.get("status") != "Terminated" and conf["nonce"] in script:
                found.append(bid["fid"])
        cursor = page.get("next_cursor") if isinstance(page, dict) else None
        if not cursor:
            return found
        query["next_cursor"] = cursor


def delete_bid(why):
    log(why + ": deleting bid " + conf["bid_name"])
    for fid in my_bids():
        try:
            call("DELETE", "/v2/spot/bids/" + urllib.parse.quote(fid, safe=""))
        except urllib.error.HTTPError as err:
            if err.code != 404:
                raise
        log("deleted bid " + fid)


started = first_start()
lease = os.path.expanduser(conf["lease_path"])
deadline = min(started + conf["run_seconds"], conf["key_expires"] - conf["key_slack"])
while True:
    now = time.time()
    try:
        touched = os.stat(lease).st_mtime
    except OSError:
        touched = 0.0
    lease_end = max(started + conf["boot_seconds"], touched + conf["lease_seconds"])
    why = "the lease ran out" if now >= lease_end else "the deadline passed" if now >= deadline else None
    if why is None:
        time.sleep(max(0.05, min(conf["check_seconds"], lease_end - now, deadline - now)))
        continue
    try:
        delete_bid(why)
        sys.exit(0)
    except urllib.error.HTTPError as err:
        if err.code == 401:  # sflow revoked the key: it ended the bid itself
            log("the key is revoked or expired; nothing left to do")
            sys.exit(0)
        log("the API answered %d; retrying" % err.code)
    except (OSError, ValueError) as err:
        log("the API cannot be reached (%s); retrying" % err)
    time.sleep(conf["check_seconds"])
'''

SNIPPET = """\
# sflow: this bid deletes itself once sflow stops renewing its lease (the machine running sflow died),
# and at its deadline. The key is in a file only this script's user (root) can read.
sflow_deadman() {{
  command -v python3 >/dev/null || {{ log "no python3: nothing deletes this bid if sflow's machine dies"; return 1; }}
  if [ "$(id -u)" = 0 ]; then dir=/var/lib/sflow-deadman; else dir="$HOME/.sflow-deadman"; fi
  (umask 077 && mkdir -p "$dir" && chmod 700 "$dir" && printf '%s\\n' {conf} >"$dir/conf.json") || return 1
  cat >"$dir/watch.py" <<'{marker}'
{watcher}{marker}
  if command -v systemd-run >/dev/null \\
      && systemd-run --quiet --unit=sflow-deadman -p Restart=on-failure python3 "$dir/watch.py" "$dir/conf.json"; then
    return 0
  fi
  nohup setsid python3 "$dir/watch.py" "$dir/conf.json" >>"$dir/log" 2>&1 </dev/null &
}}
sflow_deadman || log "the dead-man switch did not start"
"""


def snippet(conf: dict) -> str:
    """The startup script's lines that start the watcher with ``conf`` (key included), quoted once."""
    return SNIPPET.format(conf=shlex.quote(json.dumps(conf, sort_keys=True)), marker=MARKER, watcher=WATCHER)


def watcher_conf(*, api_url: str, key: str, project: str, bid_name: str, nonce: str, user: str, plan: dict,
                 key_expires: float) -> dict:
    """What the watcher reads. ``plan`` is the bid's key record's ``watch`` (the lease and deadline
    settings fixed when the bid was decided on, so a retried create sends the same script)."""
    return {"api_url": api_url, "key": key, "project": project, "bid_name": bid_name, "nonce": nonce,
            "lease_path": LEASE_PATH.format(user=user), "lease_seconds": plan["lease_seconds"],
            "boot_seconds": plan["boot_seconds"], "run_seconds": plan["run_seconds"],
            "check_seconds": plan["check_seconds"], "key_expires": key_expires, "key_slack": KEY_SLACK}


def plan_for(settings, limit_seconds: float | None) -> dict:
    """The lease and deadline of a new bid's instances: ``limit_seconds`` is the job's time limit
    (None: unlimited; ``unlimited_hours`` stands in)."""
    run = (limit_seconds if limit_seconds is not None else settings.deadman["unlimited_hours"] * 3600.0)
    return {"lease_seconds": settings.deadman["lease_seconds"], "boot_seconds": settings.deadman["lease_boot_seconds"],
            "run_seconds": run + settings.deadman["deadline_margin_seconds"],
            "check_seconds": settings.deadman["deadman_check_seconds"]}


def key_lifetime(settings, plan: dict) -> float:
    """Seconds the bid's key lives: the wait for the auction, the boot window, the run, the slack."""
    return settings.deadman["bid_wait_hours"] * 3600.0 + plan["boot_seconds"] + plan["run_seconds"] + 2 * KEY_SLACK


def must_rebid(plan: dict, expires: float, now: float) -> bool:
    """An open bid won now might not finish its run before its key expires: place it again."""
    return now + plan["boot_seconds"] + plan["run_seconds"] + KEY_SLACK >= expires


__all__ = ["DEFAULTS", "KEY_SLACK", "LEASE_PATH", "MARKER", "WATCHER", "key_lifetime", "must_rebid",
           "plan_for", "snippet", "watcher_conf"]
