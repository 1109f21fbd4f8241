#!/usr/bin/env python3
"""swap-bench.py -- the swap's pause per step against state size, and the longest client gap in a
window with a swap against an equal window without one, measured in the same run.

For each state size it starts `understudy run` (release build, fsync everysec, shadow on) in a temp
directory, loads N keys, starts redis-benchmark (bounded) as background load and the workplace's
gap-probe (../shared/tools/gap-probe.py) as the measuring client, waits for a quiet baseline window,
then runs SWAPS `understudy swap`s, and prints the per-step pauses from `GET /swaps` and the probe's
longest gaps inside and outside the swap windows.

Usage: scripts/swap-bench.py [--sizes 10000,100000,1000000] [--swaps 5]
Loopback only; every load is bounded in requests and time.
"""
import argparse, json, os, re, shutil, socket, subprocess, sys, tempfile, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROBE = os.path.join(os.path.dirname(ROOT), "shared", "tools", "gap-probe.py")


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def load_keys(port, n):
    s = socket.create_connection(("127.0.0.1", port))
    batch = []
    sent = 0
    def flush():
        nonlocal batch
        if not batch:
            return
        s.sendall(b"".join(batch))
        need = len(batch)
        got = 0
        buf = b""
        while got < need:
            buf += s.recv(1 << 20)
            got = buf.count(b"\r\n")
        batch = []
    for i in range(n):
        k = b"bench:key:%d" % i
        v = b"value-%d-abcdefghijklmnop" % i
        batch.append(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(k), k, len(v), v))
        if len(batch) == 1000:
            flush()
    flush()
    s.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--swaps", type=int, default=5)
    args = ap.parse_args()
    bindir = run(["swift", "build", "-c", "release", "--show-bin-path"], cwd=ROOT).stdout.strip()
    for product in ("understudy", "kv-v1"):
        run(["swift", "build", "-c", "release", "--product", product], cwd=ROOT)
    print("# %s loadavg=%s cpus=%d" % (time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                       open("/proc/loadavg").read().split()[:3], os.cpu_count()))
    for size in [int(x) for x in args.sizes.split(",")]:
        work = tempfile.mkdtemp(prefix="us-swapbench-")
        sup = subprocess.Popen([os.path.join(bindir, "understudy"), "run", "--service", os.path.join(bindir, "kv-v1"),
                                "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--data", work,
                                "--probation-seconds", "1", "--log-level", "warning"],
                               stdout=subprocess.PIPE, stderr=open(os.path.join(work, "err.log"), "w"), text=True)
        try:
            line = sup.stdout.readline()
            port = int(re.search(r"listen=[^ ]*:(\d+)", line).group(1))
            admin = re.search(r"admin=([^ ]+)", line).group(1)
            load_keys(port, size)
            cli = [os.path.join(bindir, "understudy")]
            # Wait for the shadow to be live and in step.
            def status():
                out = run(cli + ["status", "--json", "--admin", admin, "--data", work]).stdout
                return json.loads(out)
            for _ in range(600):
                st = status()
                if any(i["role"] == "shadow" and i["phase"] == "live" for i in st["instances"]):
                    break
                time.sleep(0.1)
            bench = subprocess.Popen(["redis-benchmark", "-p", str(port), "-t", "set,get", "-n", "2000000", "-r", str(size),
                                      "-c", "8", "-q"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            probe_json = os.path.join(work, "probe.json")
            duration = 6 + args.swaps * 3
            probe = subprocess.Popen([sys.executable, PROBE, "--duration", str(duration), "--top", "50", "--json", probe_json,
                                      "127.0.0.1:%d" % port], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            t0 = time.time()
            time.sleep(5)  # baseline window: 0.5 s .. 5 s
            swap_windows = []
            for _ in range(args.swaps):
                for _ in range(100):  # a live shadow is needed (the previous one retires after probation)
                    if any(i["role"] == "shadow" and i["phase"] == "live" for i in status()["instances"]):
                        break
                    time.sleep(0.1)
                start = time.time() - t0
                r = subprocess.run(cli + ["swap", "--admin", admin, "--data", work], capture_output=True, text=True)
                swap_windows.append((start, time.time() - t0))
                time.sleep(2.5)
            probe.wait()
            bench.terminate()
            report = json.load(open(probe_json))
            token = open(os.path.join(work, "admin.token")).read().strip()
            request = urllib.request.Request("http://%s/swaps" % admin, headers={"Authorization": "Bearer " + token})
            history = json.load(urllib.request.urlopen(request, timeout=10))
            ok = [h for h in history if h["outcome"]["succeeded"]]
            pauses = sorted(h["pauseMicros"] / 1000 for h in ok)
            steps = {}
            for h in ok:
                for k, v in h["stepMicros"].items():
                    steps.setdefault(k, []).append(v / 1000)
            gaps = report.get("top_gaps", [])
            def in_windows(g):
                at = g["to_s"]
                return any(a - 0.2 <= at <= b + 0.2 for a, b in swap_windows)
            swap_gap = max([g["gap_ms"] for g in gaps if in_windows(g)] or [0])
            base_gap = max([g["gap_ms"] for g in gaps if 0.5 <= g["to_s"] <= 5] or [0])
            pct = lambda q: pauses[min(len(pauses) - 1, int(q * len(pauses)))] if pauses else -1
            print("keys=%d swaps_ok=%d/%d pause_ms median=%.3f p90=%.3f p99=%.3f max=%.3f steps_ms_median={%s} probe: longest gap in swap windows=%.1f ms, in the 4.5 s baseline window=%.1f ms, lost_acked=%s, failed_ops=%s %s" % (
                size, len(ok), args.swaps, pct(0.5), pct(0.9), pct(0.99), pauses[-1] if pauses else -1,
                ", ".join("%s %.3f" % (k, sorted(v)[len(v) // 2]) for k, v in sorted(steps.items())),
                swap_gap, base_gap, report.get("lost_acked"), report.get("failed_ops"), json.dumps(report.get("error_kinds", {}))))
            if ok:
                worst = max(ok, key=lambda h: h["pauseMicros"])
                print("  slowest swap: pause %.3f ms, steps_ms={%s}" % (worst["pauseMicros"] / 1000, ", ".join(
                    "%s %.3f" % (k, v / 1000) for k, v in sorted(worst["stepMicros"].items()))))
            sys.stdout.flush()
        finally:
            sup.terminate()
            try:
                sup.wait(timeout=30)
            except subprocess.TimeoutExpired:
                sup.kill()
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
