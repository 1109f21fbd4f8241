#!/usr/bin/env python3
"""chaos.py -- kill -9 things under an INCR load and check that no acknowledged write is lost or doubled.

Starts `understudy run` (kv-v1, --fsync always) in a temp directory on free loopback ports, runs C
connections of raw-RESP INCR load (each connection owns K keys chaos:<conn>:<k>), and for each round
SIGKILLs a random victim: the primary worker, the shadow worker, a candidate started by
`understudy deploy kv-v2 --no-swap`, or the supervisor itself (then restarts it on the same ports).
After every round it waits for a live primary and a live shadow. At the end it GETs every key and
checks  acked <= value <= acked + unknown,  that acknowledged replies never went backwards, that no
input was quarantined as a crash/deadline, and that SIGTERM stops the supervisor with exit 0.

Usage: scripts/chaos.py [--rounds 20] [--connections 4] [--keys-per-connection 8] [--seed S]
                        [--keep] [--json FILE] [--bin-dir DIR] [--victims primary,shadow,candidate,supervisor]
Python 3 standard library only. Loopback only. Every wait is bounded; the run stops itself.
Exit 0 only when nothing was lost, doubled, unrecovered or left running and the supervisor stopped
cleanly; exit 1 otherwise (the problems are listed), 130 when interrupted.
"""
import argparse
import atexit
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLEAN_REJECTIONS = (b"-ERR request quarantined", b"-BUSY", b"-ERR the server is shutting down")
VICTIMS = ("primary", "shadow", "candidate", "supervisor")


def now():
    return time.monotonic()


def log(msg):
    print(msg, flush=True)


class SetupError(Exception):
    pass


# --------------------------------------------------------------------------------------------- processes

def proc_state(pid):
    """The /proc state letter of pid, or None when it does not exist."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            data = f.read()
        return data[data.rindex(b")") + 2:data.rindex(b")") + 3].decode()
    except (OSError, ValueError):
        return None


def proc_cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read()
    except OSError:
        return None


def alive(pid, cmdline=None):
    """True while pid runs (not a zombie) and, when given, still has the command line it had."""
    if not pid or pid <= 0:
        return False
    st = proc_state(pid)
    if st is None or st in ("Z", "X", "x"):
        return False
    if cmdline is not None and proc_cmdline(pid) != cmdline:
        return False
    return True


def children_of(ppid):
    """The pids whose parent is ppid (from /proc)."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name, "rb") as f:
                data = f.read()
            fields = data[data.rindex(b")") + 2:].split()
            if int(fields[1]) == ppid and fields[0] not in (b"Z", b"X"):
                out.append(int(name))
        except (OSError, ValueError, IndexError):
            continue
    return out


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


# --------------------------------------------------------------------------------------------- load

class KeyStats:
    __slots__ = ("acked", "unknown", "last_reply", "regressions")

    def __init__(self):
        self.acked = 0
        self.unknown = 0
        self.last_reply = 0
        self.regressions = []


class Load:
    """C threads, each with its own connection and keys, sending one INCR at a time."""

    def __init__(self, port, connections, keys_per_connection):
        self.port = port
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.keys = {}
        self.rejected = {}
        self.other_errors = {}
        self.reconnects = 0
        self.threads = []
        for c in range(connections):
            ks = ["chaos:%d:%d" % (c, k) for k in range(keys_per_connection)]
            for k in ks:
                self.keys[k] = KeyStats()
            t = threading.Thread(target=self.worker, args=(ks,), name="load-%d" % c, daemon=True)
            self.threads.append(t)

    def start(self):
        for t in self.threads:
            t.start()

    def finish(self, timeout=30.0):
        self.stop.set()
        deadline = now() + timeout
        for t in self.threads:
            t.join(max(0.0, deadline - now()))
        return [t.name for t in self.threads if t.is_alive()]

    def _count(self, table, line):
        text = line.decode("utf-8", "replace").strip()
        with self.lock:
            table[text[:80]] = table.get(text[:80], 0) + 1

    def worker(self, keys):
        i = 0
        sock = None
        buf = b""
        while not self.stop.is_set():
            if sock is None:
                try:
                    sock = socket.create_connection(("127.0.0.1", self.port), timeout=10.0)
                    sock.settimeout(10.0)
                    buf = b""
                except OSError:
                    sock = None
                    time.sleep(0.02)
                    continue
            key = keys[i % len(keys)]
            i += 1
            st = self.keys[key]
            kb = key.encode()
            req = b"*2\r\n$4\r\nINCR\r\n$%d\r\n%s\r\n" % (len(kb), kb)
            line = None
            try:
                sock.sendall(req)
                while b"\r\n" not in buf:
                    chunk = sock.recv(65536)
                    if not chunk:
                        raise ConnectionError("closed by peer")
                    buf += chunk
                line, buf = buf.split(b"\r\n", 1)
            except (OSError, ConnectionError):
                line = None
            if line is not None and line.startswith(b":"):
                try:
                    n = int(line[1:])
                except ValueError:
                    n = None
                if n is not None:
                    st.acked += 1
                    if n <= st.last_reply:
                        st.regressions.append((st.last_reply, n))
                    st.last_reply = max(st.last_reply, n)
                    continue
            if line is not None and line.startswith(CLEAN_REJECTIONS):
                self._count(self.rejected, line)
                continue  # a clean rejection: not applied; the connection stays usable
            # Broken connection, timeout, or an error reply that is not a clear rejection: unknown.
            st.unknown += 1
            if line is not None:
                self._count(self.other_errors, line)
            try:
                sock.close()
            except OSError:
                pass
            sock = None
            with self.lock:
                self.reconnects += 1
            time.sleep(0.02)
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass


def resp_get(port, key, timeout=10.0):
    """GET key on a fresh connection; returns the integer value (0 for nil)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.settimeout(timeout)
        kb = key.encode()
        s.sendall(b"*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n" % (len(kb), kb))
        buf = b""
        while b"\r\n" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                raise ConnectionError("closed by peer")
            buf += chunk
        head, rest = buf.split(b"\r\n", 1)
        if head == b"$-1":
            return 0
        if head.startswith(b"$"):
            n = int(head[1:])
            while len(rest) < n + 2:
                chunk = s.recv(65536)
                if not chunk:
                    raise ConnectionError("closed by peer")
                rest += chunk
            return int(rest[:n])
        if head.startswith(b":"):
            return int(head[1:])
        raise RuntimeError("unexpected GET reply %r" % head[:200])


# --------------------------------------------------------------------------------------------- chaos

class Chaos:
    def __init__(self, args):
        self.args = args
        self.rng = random.Random(args.seed)
        self.victims = tuple(args.victims)
        self.bin = args.bin_dir
        self.tmp = tempfile.mkdtemp(prefix="understudy-chaos-")
        self.data = os.path.join(self.tmp, "data")
        self.logpath = os.path.join(self.tmp, "supervisor.log")
        self.port = free_port()
        self.admin_port = free_port()
        while self.admin_port == self.port:
            self.admin_port = free_port()
        self.admin = "127.0.0.1:%d" % self.admin_port
        self.sup = None            # Popen of `understudy run`
        self.sup_starts = 0
        self.deploy = None         # Popen of a running `understudy deploy`
        self.known_workers = {}    # pid -> cmdline bytes, every worker we saw in a status
        self.problems = []
        self.rounds = []
        self.counts = {v: 0 for v in VICTIMS}
        self.skipped = 0
        self.unrecovered = 0
        self.surviving = 0
        self.stopped_cleanly = False
        self.load = None
        self.cleaned = False
        self.last_status = None
        self.start_failures = []

    # ---- helpers

    def exe(self, name):
        return os.path.join(self.bin, name)

    def wait_for_binaries(self, names, timeout=60.0):
        """Other people rebuild: a binary may vanish for a moment."""
        deadline = now() + timeout
        while True:
            missing = [n for n in names if not os.access(self.exe(n), os.X_OK)]
            if not missing:
                return
            if now() > deadline:
                raise SetupError("binaries missing in %s: %s" % (self.bin, ", ".join(missing)))
            time.sleep(0.5)

    def status(self, timeout=10.0):
        """The supervisor's status JSON, or None when it cannot be had right now."""
        try:
            r = subprocess.run([self.exe("understudy"), "status", "--json", "--admin", self.admin, "--data", self.data],
                               capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired):
            return None
        if r.returncode != 0:
            return None
        try:
            st = json.loads(r.stdout)
        except ValueError:
            return None
        self.last_status = st
        for inst in st.get("instances", []):
            pid = inst.get("pid") or 0
            if pid > 0 and pid not in self.known_workers:
                cl = proc_cmdline(pid)
                if cl is not None:
                    self.known_workers[pid] = cl
        return st

    @staticmethod
    def instance(st, role):
        for inst in (st or {}).get("instances", []):
            if inst.get("role") == role:
                return inst
        return None

    def healthy(self, st, exclude=()):
        """A live primary and a live shadow, neither of them a killed pid, both running."""
        if not st:
            return False
        p, s = self.instance(st, "primary"), self.instance(st, "shadow")
        for inst in (p, s):
            if inst is None or inst.get("phase") != "live":
                return False
            pid = inst.get("pid") or 0
            if pid in exclude or not alive(pid):
                return False
        return True

    def wait_healthy(self, timeout, exclude=()):
        deadline = now() + timeout
        while now() < deadline:
            if self.sup is not None and self.sup.poll() is not None:
                return False, "supervisor exited with %s" % self.sup.returncode
            if self.healthy(self.status(), exclude):
                return True, ""
            time.sleep(0.1)
        st = self.status()
        desc = "; ".join("%s %s pid %s" % (i.get("role"), i.get("phase"), i.get("pid"))
                         for i in (st or {}).get("instances", [])) if st else "no status"
        if st and st.get("givenUpRoles"):
            desc += "; givenUpRoles %s" % st.get("givenUpRoles")
        return False, "no live primary + live shadow after %.0f s (%s)" % (timeout, desc)

    # ---- supervisor

    def run_args(self):
        return [self.exe("understudy"), "run", "--service", self.exe("kv-v1"),
                "--listen", "127.0.0.1:%d" % self.port, "--admin", self.admin, "--data", self.data,
                "--fsync", "always", "--snapshot-every", "2000", "--log-level", "warning"]

    def start_supervisor(self, timeout=60.0):
        """Starts `understudy run` and waits for its ready line; retries a failed start (a port in TIME_WAIT)."""
        deadline = now() + timeout
        attempt = 0
        last = ""
        while now() < deadline:
            attempt += 1
            self.wait_for_binaries(["understudy", "kv-v1"])
            self.sup_starts += 1
            with open(self.logpath, "ab") as lf:
                lf.write(("\n=== chaos: start #%d (attempt %d) at %s ===\n"
                          % (self.sup_starts, attempt, time.strftime("%H:%M:%S"))).encode())
                lf.flush()
                try:
                    self.sup = subprocess.Popen(self.run_args(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                                stderr=lf, start_new_session=True, cwd=self.tmp)
                except OSError as e:
                    last = str(e)
                    self.sup = None
                    time.sleep(0.5)
                    continue
            ready = threading.Event()
            lines = []

            def reader(p=self.sup):
                for raw in p.stdout:
                    lines.append(raw.decode("utf-8", "replace").rstrip())
                    if raw.startswith(b"understudy ready:"):
                        ready.set()
                p.stdout.close()

            threading.Thread(target=reader, daemon=True).start()
            while now() < deadline and not ready.is_set() and self.sup.poll() is None:
                ready.wait(0.05)
            if ready.is_set():
                return lines[-1]
            if self.sup.poll() is None:
                break  # still running but never ready: give up below
            last = "exited with %s before its ready line" % self.sup.returncode
            self.start_failures.append("start #%d: %s%s" % (self.sup_starts, last, (": " + lines[-1]) if lines else ""))
            with open(self.logpath, "ab") as lf:
                lf.write(("=== chaos: start #%d %s (stdout: %r) ===\n" % (self.sup_starts, last, lines[-3:])).encode())
            self.sup = None
            time.sleep(0.5)
        if self.sup is not None and self.sup.poll() is None:
            self.sup.kill()
            self.sup.wait()
            last = "no ready line within %.0f s" % timeout
        self.sup = None
        raise SetupError("understudy run did not become ready: %s (see %s)" % (last, self.logpath))

    # ---- victims

    def kill_worker(self, role):
        st = self.status()
        inst = self.instance(st, role)
        if inst is None or not (inst.get("pid") or 0) > 0:
            return None, "no %s in status" % role
        pid = inst["pid"]
        t0 = now()
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return None, "%s pid %d already gone" % (role, pid)
        return (t0, {pid}), "pid %d" % pid

    def kill_candidate(self):
        self.wait_for_binaries(["understudy", "kv-v2"])
        out = open(os.path.join(self.tmp, "deploy.log"), "ab")
        out.write(("\n=== chaos: deploy at %s ===\n" % time.strftime("%H:%M:%S")).encode())
        out.flush()
        delay = self.rng.uniform(0.0, 1.0)
        self.deploy = subprocess.Popen(
            [self.exe("understudy"), "deploy", self.exe("kv-v2"), "--admin", self.admin, "--data", self.data,
             "--no-swap", "--compare-seconds", "20"],
            stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True, cwd=self.tmp)
        out.close()
        cand = None
        deadline = now() + 20.0
        while now() < deadline and self.deploy.poll() is None:
            inst = self.instance(self.status(), "candidate")
            if inst is not None and (inst.get("pid") or 0) > 0 and alive(inst["pid"]):
                cand = inst
                break
            time.sleep(0.1)
        if cand is None:
            rc = self.deploy.poll()
            self.finish_deploy(expect_failure=False)
            return None, "no candidate within 20 s (deploy %s)" % ("exited %s" % rc if rc is not None else "still running")
        time.sleep(delay)
        pid = cand["pid"]
        t0 = now()
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            self.finish_deploy(expect_failure=False)
            return None, "candidate pid %d gone before the kill" % pid
        rc = self.finish_deploy(expect_failure=True)
        return (t0, {pid}), "pid %d (phase %s), deploy exit %s" % (pid, cand.get("phase"), rc)

    def finish_deploy(self, expect_failure):
        d, self.deploy = self.deploy, None
        if d is None:
            return None
        try:
            rc = d.wait(30.0)
        except subprocess.TimeoutExpired:
            d.kill()
            d.wait()
            self.problems.append("deploy process did not exit within 30 s after its candidate was killed (killed it)")
            return "killed"
        if expect_failure and rc == 0:
            self.problems.append("deploy exited 0 although its candidate was SIGKILLed")
        return rc

    def kill_supervisor(self):
        st = self.status() or self.last_status
        workers = {}
        for inst in (st or {}).get("instances", []):
            pid = inst.get("pid") or 0
            if pid > 0:
                workers[pid] = self.known_workers.get(pid) or proc_cmdline(pid)
        spid = self.sup.pid
        for pid in children_of(spid):
            if pid not in workers:
                cl = proc_cmdline(pid)
                if cl is not None:
                    workers[pid] = cl
                    self.known_workers.setdefault(pid, cl)
        t0 = now()
        os.kill(spid, signal.SIGKILL)
        self.sup.wait()
        self.sup = None
        # Its workers must die with it.
        deadline = t0 + 2.0
        while now() < deadline and any(alive(p, c) for p, c in workers.items()):
            time.sleep(0.02)
        survivors = [p for p, c in workers.items() if alive(p, c)]
        for p in survivors:
            self.surviving += 1
            self.problems.append("worker pid %d (%s) survived the supervisor's SIGKILL by 2 s"
                                 % (p, (workers[p] or b"?").split(b"\0")[0].decode("utf-8", "replace")))
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass
        failures_before = len(self.start_failures)
        self.start_supervisor()
        detail = "pid %d, %d workers" % (spid, len(workers))
        if len(self.start_failures) > failures_before:
            detail += ", restart needed %d attempts: %s" % (
                len(self.start_failures) - failures_before + 1, "; ".join(self.start_failures[failures_before:]))
        if survivors:
            detail += ", SURVIVORS %s" % survivors
        return (t0, set(workers)), detail

    # ---- the run

    def run(self):
        a = self.args
        log("chaos: seed %s, %d rounds, %d connections x %d keys, bin %s, data %s"
            % (a.seed, a.rounds, a.connections, a.keys_per_connection, self.bin, self.tmp))
        ready = self.start_supervisor()
        log("chaos: " + ready)
        ok, why = self.wait_healthy(60.0)
        if not ok:
            raise SetupError("initial start: " + why)
        self.load = Load(self.port, a.connections, a.keys_per_connection)
        self.load.start()
        for r in range(1, a.rounds + 1):
            time.sleep(self.rng.uniform(0.3, 1.0))
            victim = self.rng.choice(self.victims)
            if victim in ("primary", "shadow"):
                killed, detail = self.kill_worker(victim)
            elif victim == "candidate":
                killed, detail = self.kill_candidate()
            else:
                killed, detail = self.kill_supervisor()
            if killed is None:
                self.skipped += 1
                self.rounds.append({"round": r, "victim": victim, "skipped": True, "detail": detail})
                log("round %2d/%d: %-10s skipped (%s)" % (r, a.rounds, victim, detail))
                ok, why = self.wait_healthy(60.0)
                if not ok:
                    self.unrecovered += 1
                    self.problems.append("round %d (%s, skipped): %s" % (r, victim, why))
                    log("round %2d/%d: UNRECOVERED: %s" % (r, a.rounds, why))
                continue
            t0, pids = killed
            self.counts[victim] += 1
            ok, why = self.wait_healthy(60.0, exclude=pids)
            ms = (now() - t0) * 1000.0
            self.rounds.append({"round": r, "victim": victim, "skipped": False, "detail": detail,
                                "recovered": ok, "recovery_ms": round(ms, 1), "problem": None if ok else why})
            if ok:
                log("round %2d/%d: %-10s recovered in %6.0f ms  (%s)" % (r, a.rounds, victim, ms, detail))
            else:
                self.unrecovered += 1
                self.problems.append("round %d (%s, %s): %s" % (r, victim, detail, why))
                log("round %2d/%d: %-10s UNRECOVERED after %.0f ms: %s  (%s)" % (r, a.rounds, victim, ms, why, detail))
                if self.sup is None or self.sup.poll() is not None:
                    break
        time.sleep(1.0)
        stuck = self.load.finish(30.0)
        if stuck:
            self.problems.append("load threads did not stop: %s" % ", ".join(stuck))
        self.verify()
        self.stop_supervisor()

    def verify(self):
        self.lost = self.doubled = 0
        self.lost_keys, self.doubled_keys, self.regressions = [], [], []
        self.values = {}
        for key, st in sorted(self.load.keys.items()):
            value = None
            deadline = now() + 30.0
            err = None
            while now() < deadline:
                try:
                    value = resp_get(self.port, key)
                    break
                except (OSError, ConnectionError, RuntimeError, ValueError) as e:
                    err = e
                    time.sleep(0.1)
            if value is None:
                self.problems.append("GET %s failed: %s" % (key, err))
                continue
            self.values[key] = value
            if value < st.acked:
                self.lost += st.acked - value
                self.lost_keys.append(key)
                self.problems.append("LOST: %s = %d but %d INCRs were acknowledged (unknown %d)"
                                     % (key, value, st.acked, st.unknown))
            if value > st.acked + st.unknown:
                self.doubled += value - st.acked - st.unknown
                self.doubled_keys.append(key)
                self.problems.append("DOUBLED: %s = %d but only %d acknowledged + %d unknown were sent"
                                     % (key, value, st.acked, st.unknown))
            if value < st.last_reply:
                self.regressions.append(key)
                self.problems.append("LOST: %s = %d below an acknowledged reply :%d" % (key, value, st.last_reply))
            for prev, n in st.regressions:
                self.regressions.append(key)
                self.problems.append("LOST: %s replied :%d after an acknowledged :%d (state went backwards)"
                                     % (key, n, prev))
        st = self.status()
        self.given_up = (st or {}).get("givenUpRoles") or []
        self.quarantined = (st or {}).get("quarantined", []) if st else None
        if st is None:
            self.problems.append("no status for the final quarantine check")
        for q in self.quarantined or []:
            reason = str(q.get("reason", ""))
            log("chaos: quarantined: sequence %s %s: %s" % (q.get("sequence"), q.get("command"), reason))
            if "crashed" in reason or "deadline" in reason:
                self.problems.append("input %s (%s) quarantined as guilty after an outside SIGKILL: %s"
                                     % (q.get("sequence"), q.get("command"), reason))
        final_workers = {}
        for inst in (st or {}).get("instances", []):
            pid = inst.get("pid") or 0
            if pid > 0:
                final_workers[pid] = self.known_workers.get(pid)
        self.final_workers = final_workers

    def stop_supervisor(self):
        if self.sup is None or self.sup.poll() is not None:
            self.problems.append("supervisor was not running at the end (exit %s)"
                                 % (self.sup.returncode if self.sup else "n/a"))
            return
        self.sup.send_signal(signal.SIGTERM)
        try:
            rc = self.sup.wait(60.0)
        except subprocess.TimeoutExpired:
            self.sup.kill()
            self.sup.wait()
            self.problems.append("supervisor did not exit within 60 s of SIGTERM (killed it)")
            self.sup = None
            return
        self.sup = None
        if rc != 0:
            self.problems.append("supervisor exited %s on SIGTERM (expected 0)" % rc)
            return
        deadline = now() + 2.0
        while now() < deadline and any(alive(p, c) for p, c in self.final_workers.items()):
            time.sleep(0.02)
        for p, c in self.final_workers.items():
            if alive(p, c):
                self.surviving += 1
                self.problems.append("worker pid %d survived the supervisor's clean stop by 2 s" % p)
                try:
                    os.kill(p, signal.SIGKILL)
                except OSError:
                    pass
        self.stopped_cleanly = True

    # ---- reporting and cleanup

    def summary(self):
        load = self.load
        acked = sum(s.acked for s in load.keys.values()) if load else 0
        unknown = sum(s.unknown for s in load.keys.values()) if load else 0
        rejected = sum(load.rejected.values()) if load else 0
        done = sum(self.counts.values()) + self.skipped
        return {
            "seed": self.args.seed, "rounds": done, "rounds_requested": self.args.rounds,
            "victims": dict(self.counts), "skipped": self.skipped,
            "acknowledged": acked, "unknown": unknown,
            "lost": getattr(self, "lost", 0), "doubled": getattr(self, "doubled", 0),
            "regressed_keys": sorted(set(getattr(self, "regressions", []))),
            "unrecovered": self.unrecovered, "surviving_workers": self.surviving,
            "rejected": rejected, "rejections": dict(load.rejected) if load else {},
            "other_errors": dict(load.other_errors) if load else {},
            "reconnects": load.reconnects if load else 0,
            "quarantined": getattr(self, "quarantined", None),
            "given_up_roles": getattr(self, "given_up", []),
            "supervisor_starts": self.sup_starts, "start_failures": self.start_failures,
            "stopped_cleanly": self.stopped_cleanly,
            "round_log": self.rounds,
            "keys": {k: {"acked": s.acked, "unknown": s.unknown, "value": getattr(self, "values", {}).get(k)}
                     for k, s in sorted(load.keys.items())} if load else {},
            "problems": self.problems, "data_dir": self.tmp if self.args.keep else None,
            "ok": False,
        }

    def cleanup(self):
        if self.cleaned:
            return
        self.cleaned = True
        if self.load is not None:
            self.load.stop.set()
        for p in (self.deploy, self.sup):
            if p is not None and p.poll() is None:
                try:
                    p.kill()
                    p.wait(5)
                except Exception:
                    pass
        for pid, cl in list(self.known_workers.items()):
            if alive(pid, cl):
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        if not self.args.keep:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def log_tail(self, n=40):
        try:
            with open(self.logpath, "rb") as f:
                lines = f.read().decode("utf-8", "replace").splitlines()
            return lines[-n:]
        except OSError:
            return []


def default_bin_dir():
    env = os.environ.get("UNDERSTUDY_BIN_DIR")
    if env:
        return env
    rel = os.path.join(ROOT, ".build", "release")
    if os.access(os.path.join(rel, "understudy"), os.X_OK):
        return rel
    return os.path.join(ROOT, ".build", "debug")


def main():
    ap = argparse.ArgumentParser(description="kill -9 chaos rounds against understudy under an INCR load")
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--keys-per-connection", type=int, default=8)
    ap.add_argument("--seed", type=int, default=None, help="seed for the victim choice and timings (default: random, printed)")
    ap.add_argument("--keep", action="store_true", help="keep the temp directory (data, supervisor.log, deploy.log)")
    ap.add_argument("--json", metavar="FILE", help="write a JSON summary to FILE")
    ap.add_argument("--bin-dir", default=None, help="directory with understudy, kv-v1, kv-v2")
    ap.add_argument("--victims", default=",".join(VICTIMS),
                    help="comma-separated victims to draw from (default: %(default)s)")
    ap.add_argument("--max-seconds", type=float, default=None, help="hard limit for the whole run (default 180 + 150 per round)")
    args = ap.parse_args()
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1, 2**31)
    args.bin_dir = os.path.abspath(args.bin_dir or default_bin_dir())
    args.victims = [v.strip() for v in args.victims.split(",") if v.strip()]
    if not args.victims or any(v not in VICTIMS for v in args.victims):
        ap.error("--victims takes a comma-separated subset of " + ",".join(VICTIMS))
    if args.rounds < 0 or args.connections < 1 or args.keys_per_connection < 1:
        ap.error("--rounds >= 0, --connections >= 1 and --keys-per-connection >= 1")

    chaos = Chaos(args)
    atexit.register(chaos.cleanup)

    def on_signal(signum, frame):
        raise KeyboardInterrupt("signal %d" % signum)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)

    limit = args.max_seconds or (180.0 + 150.0 * args.rounds)

    def watchdog():
        time.sleep(limit)
        sys.stderr.write("chaos: the run passed its %.0f s limit; stopping everything\n" % limit)
        sys.stderr.flush()
        chaos.cleanup()
        os._exit(1)
    threading.Thread(target=watchdog, daemon=True).start()

    code = 1
    try:
        try:
            chaos.run()
        except SetupError as e:
            chaos.problems.append("setup: %s" % e)
        except KeyboardInterrupt as e:
            chaos.problems.append("interrupted (%s)" % (e or "Ctrl-C"))
            code = 130
        s = chaos.summary()
        ok = (code == 1 and s["lost"] == 0 and s["doubled"] == 0 and not s["regressed_keys"]
              and s["unrecovered"] == 0 and s["surviving_workers"] == 0 and chaos.stopped_cleanly
              and not chaos.problems)
        s["ok"] = ok
        v = s["victims"]
        log("chaos: %d rounds (primary %d, shadow %d, candidate %d, supervisor %d, skipped %d), "
            "%d acknowledged INCRs, lost %d, doubled %d, unrecovered %d, surviving workers %d, rejected %d"
            % (s["rounds"], v["primary"], v["shadow"], v["candidate"], v["supervisor"], s["skipped"],
               s["acknowledged"], s["lost"], s["doubled"], s["unrecovered"], s["surviving_workers"], s["rejected"]))
        extra = []
        if s["unknown"]:
            extra.append("%d unknown" % s["unknown"])
        if s["rejections"]:
            extra.append("rejections: " + ", ".join("%s x%d" % kv for kv in sorted(s["rejections"].items())))
        if s["other_errors"]:
            extra.append("other error replies: " + ", ".join("%s x%d" % kv for kv in sorted(s["other_errors"].items())))
        if s["given_up_roles"]:
            extra.append("roles given up at the end: %s" % ", ".join(s["given_up_roles"]))
        if s["start_failures"]:
            extra.append("%d failed supervisor starts" % len(s["start_failures"]))
        if s["quarantined"]:
            extra.append("%d quarantined" % len(s["quarantined"]))
        if extra:
            log("chaos: " + "; ".join(extra))
        if args.json:
            with open(args.json, "w") as f:
                json.dump(s, f, indent=2, sort_keys=True)
                f.write("\n")
        if ok:
            code = 0
        else:
            if code == 1 and not chaos.problems:
                chaos.problems.append("supervisor did not stop cleanly")
            log("chaos: FAILED (seed %s):" % args.seed)
            for p in chaos.problems:
                log("  - " + p)
            tail = chaos.log_tail()
            if tail:
                log("chaos: last %d lines of %s:" % (len(tail), chaos.logpath))
                for line in tail:
                    log("  | " + line)
        if args.keep:
            log("chaos: kept %s" % chaos.tmp)
    finally:
        chaos.cleanup()
    return code


if __name__ == "__main__":
    sys.exit(main())
