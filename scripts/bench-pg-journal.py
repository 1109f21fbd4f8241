#!/usr/bin/env python3
"""bench-pg-journal.py -- the PostgreSQL journal against the file journal, back to back on one machine.

Starts its own PostgreSQL cluster (initdb in a temporary directory, fsync on; as the postgres user when run as
root), then measures:
  1. redis-benchmark (set, incr; -P 1 and -P 16) through `understudy run` with the file journal and with
     --journal postgres://..., under --fsync always and everysec (PostgreSQL: synchronous_commit on / off);
  2. acknowledged-write latency: one client, one INCR at a time, p50/p99/max, file vs PostgreSQL, fsync always;
  3. takeover: an active and a --standby supervisor; SIGKILL of the active, then SIGSTOP of the new active:
     milliseconds from the signal until the other one accepts an INCR (lease --lease-ms).

Usage: scripts/bench-pg-journal.py   (builds release binaries first; BIN=DIR uses binaries from DIR instead)
Environment: REQUESTS [50000], CLIENTS [50], LEASE_MS [2000], ROUNDS [5]
"""
import glob, os, shutil, signal, socket, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REQUESTS = int(os.environ.get("REQUESTS", "50000"))
CLIENTS = int(os.environ.get("CLIENTS", "50"))
LEASE_MS = int(os.environ.get("LEASE_MS", "2000"))
ROUNDS = int(os.environ.get("ROUNDS", "5"))


def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p


def pg_bin():
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.access(d + "/initdb", os.X_OK):
            return d
    sys.exit("PostgreSQL's server programs are not installed (Debian: apt-get install postgresql)")


def as_server_user(argv):
    return (["runuser", "-u", "postgres", "--"] + argv) if os.getuid() == 0 else argv


class Cluster:
    def __init__(self, work):
        self.bin, self.dir, self.port = pg_bin(), work + "/pg", free_port()
        os.makedirs(self.dir)
        if os.getuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        subprocess.run(as_server_user([self.bin + "/initdb", "-D", self.dir + "/data", "-U", "understudy", "--auth=trust", "--no-sync"]),
                       check=True, stdout=subprocess.DEVNULL)
        with open(self.dir + "/data/postgresql.conf", "a") as f:
            f.write(f"\nport={self.port}\nlisten_addresses='127.0.0.1'\nunix_socket_directories='{self.dir}'\nfsync=on\nmax_connections=100\n")
        subprocess.run(as_server_user([self.bin + "/pg_ctl", "-D", self.dir + "/data", "-l", self.dir + "/log", "-w", "start"]),
                       check=True, stdout=subprocess.DEVNULL)

    def createdb(self, name):
        subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "understudy", "-d", "postgres", "-qc", f"CREATE DATABASE {name}"], check=True)
        return f"postgres://understudy@127.0.0.1:{self.port}/{name}"

    def stop(self):
        subprocess.run(as_server_user([self.bin + "/pg_ctl", "-D", self.dir + "/data", "-m", "immediate", "stop"]), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


class Supervisor:
    def __init__(self, binary_dir, work, name, args):
        self.data = f"{work}/{name}"
        self.out = open(f"{work}/{name}.out", "w+")
        self.err = open(f"{work}/{name}.err", "w")
        self.proc = subprocess.Popen([binary_dir + "/understudy", "run", "--service", binary_dir + "/kv-v1", "--listen", "127.0.0.1:0",
                                      "--admin", "127.0.0.1:0", "--data", self.data, "--log-level", "warning"] + args,
                                     stdout=self.out, stderr=self.err)
        for _ in range(600):
            self.out.seek(0)
            line = self.out.read()
            if "understudy ready" in line:
                self.port = int(line.split("listen=")[1].split()[0].rsplit(":", 1)[1])
                return
            if self.proc.poll() is not None:
                sys.exit(f"understudy {name} exited: " + open(f"{work}/{name}.err").read())
            time.sleep(0.1)
        sys.exit(f"understudy {name} was not ready")

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def resp(cmd):
    out = f"*{len(cmd)}\r\n"
    for a in cmd:
        out += f"${len(a)}\r\n{a}\r\n"
    return out.encode()


def call(port, *cmd, timeout=1.0):
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(resp(cmd))
        return s.recv(1024).decode(errors="replace")


def bench(port, label):
    rows = []
    for p in (1, 16):
        out = subprocess.run(["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-t", "set,incr", "-n", str(REQUESTS),
                              "-c", str(CLIENTS), "-P", str(p), "-r", "100000", "-q"], capture_output=True, text=True).stdout
        for line in out.replace("\r", "\n").splitlines():
            if "requests per second" in line:
                name, rate = line.split(":")[0], float(line.split(":")[1].split()[0])
                rows.append((label, name, p, rate))
    return rows


def latency(port):
    s = socket.create_connection(("127.0.0.1", port))
    samples = []
    for _ in range(2000):
        t = time.perf_counter()
        s.sendall(resp(["INCR", "latency"]))
        s.recv(64)
        samples.append((time.perf_counter() - t) * 1000)
    s.close()
    samples.sort()
    return samples[len(samples) // 2], samples[int(len(samples) * 0.99)], samples[-1]


def until_writable(port, limit=30):
    start = time.monotonic()
    while time.monotonic() - start < limit:
        try:
            if call(port, "INCR", "takeover", timeout=0.5).startswith(":"):
                return (time.monotonic() - start) * 1000
        except OSError:
            pass
        time.sleep(0.005)
    return None


def main():
    binary_dir = os.environ.get("BIN")
    if not binary_dir:
        for product in ("understudy", "kv-v1"):
            subprocess.run(["swift", "build", "-c", "release", "--product", product], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        binary_dir = subprocess.run(["swift", "build", "-c", "release", "--show-bin-path"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    work = tempfile.mkdtemp(prefix="bench-pg-")
    os.chmod(work, 0o755)
    cluster = Cluster(work)
    running = []
    try:
        print(f"# {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} loadavg={os.getloadavg()[0]:.2f} cpus={os.cpu_count()} n={REQUESTS} c={CLIENTS}")
        print("| journal | fsync | command | -P | requests/s | vs file |")
        print("|---|---|---|---|---|---|")
        lat = {}
        for fsync in ("always", "everysec"):
            results = {}
            for kind in ("file", "postgres"):
                args = ["--fsync", fsync]
                if kind == "postgres":
                    args += ["--journal", cluster.createdb(f"bench_{fsync}")]
                s = Supervisor(binary_dir, work, f"{kind}-{fsync}", args)
                running.append(s)
                time.sleep(1)
                for row in bench(s.port, kind):
                    results[(kind, row[1], row[2])] = row[3]
                if fsync == "always":
                    lat[kind] = latency(s.port)
                s.stop()
            for (kind, name, p), rate in sorted(results.items(), key=lambda x: (x[0][1], x[0][2], x[0][0])):
                base = results.get(("file", name, p))
                if base:
                    print(f"| {kind} | {fsync} | {name} | {p} | {rate:,.0f} | {rate / base:.2f}× |")
        print()
        print("Acknowledged INCR latency, one client, fsync always (ms): " + "; ".join(
            f"{k}: p50 {v[0]:.3f}, p99 {v[1]:.3f}, max {v[2]:.3f}" for k, v in lat.items()))
        url = cluster.createdb("bench_takeover")
        journal = ["--journal", url, "--lease-ms", str(LEASE_MS), "--fsync", "always"]
        a = Supervisor(binary_dir, work, "active", journal)
        b = Supervisor(binary_dir, work, "standby", journal + ["--standby"])
        running += [a, b]
        kills, stops = [], []
        for r in range(ROUNDS):
            time.sleep(1.0)
            # SIGKILL the active supervisor (its workers die with it): the standby takes over.
            a.signal(signal.SIGKILL); a.proc.wait()
            kills.append(until_writable(b.port))
            a = Supervisor(binary_dir, work, f"active-{r}", journal + ["--standby"])
            running.append(a)
            time.sleep(1.0)
            # SIGSTOP the new active: the restarted one takes over; SIGCONT: the frozen one becomes a standby.
            b.signal(signal.SIGSTOP)
            stops.append(until_writable(a.port))
            b.signal(signal.SIGCONT)
            # Now `a` (the restarted one) is active and `b` (woken up, fenced) a standby: the next round starts so.
            time.sleep(1.0)
        def summary(xs):
            xs = [x for x in xs if x is not None]
            return f"median {sorted(xs)[len(xs) // 2]:.0f} ms, max {max(xs):.0f} ms over {len(xs)}" if xs else "none"
        print(f"Takeover with --lease-ms {LEASE_MS}: after SIGKILL of the active: {summary(kills)}; after SIGSTOP: {summary(stops)}")
    finally:
        for s in running:
            try:
                s.stop()
            except Exception:
                pass
        cluster.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
