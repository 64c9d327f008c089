#!/usr/bin/env python3
"""Live-migration benchmark, vmm and QEMU side by side in one run.

For idle and busy 1 GiB guests over a UNIX socket and loopback TCP:
  - vmm: total time, the VMM's measured pause (pause -> destination ACK),
    throughput of the best pass, and for the busy guest the guest-visible
    downtime (memtest's max_gap_us: the longest jump in its own TSC clock);
  - QEMU 7.2: the same guest (`-incoming`, QMP `migrate` with the same
    downtime limit), its reported downtime and total time, and the memtest gap;
  - the physical limit: a plain socket copy of 1 GiB over the same transport.
Live update (vmm only): downtime at 1 and 4 GiB.

Idle = the `irq` scenario (waits for timer ticks in hlt; RAM stays zero);
busy = `memtest` on 2 vCPUs (every page rewritten pass after pass).
Guests run emulated on this host (see shared/ENVIRONMENT.md), so the busy
guest's dirty rate is far below what it would be on hardware KVM.
Writes JSON and prints a table."""
import argparse, json, mmap, os, re, shutil, socket, subprocess, sys, tempfile, threading, time

QEMU_BASE = ["-M", "microvm,x-option-roms=off,rtc=off,isa-serial=on", "-accel", "kvm",
             "-cpu", "host,-arch-capabilities", "-nodefaults", "-no-reboot", "-display", "none",
             "-serial", "stdio", "-device", "isa-debug-exit,iobase=0xf4,iosize=4"]
GIB = 1 << 30
DOWNTIME_MS = 50
QEMU_MAX_BANDWIDTH = 100 * GIB  # bytes/s: no throttle in practice


def log(*a):
    print("bench-migrate:", *a, file=sys.stderr, flush=True)


# ------------------------------------------------------------------ socket limit

def socket_copy(kind, nbytes, port, fresh=False):
    """Seconds to push nbytes through one stream socket (sender and receiver
    threads). The receiver reads into one reused 1 MiB buffer, or (fresh) in
    place into a new memfd of nbytes, as a migration destination must: its
    RAM is memory nobody has touched yet, which on a VM whose host reclaims
    free memory costs far more to fill than the copy itself."""
    chunk = memoryview(bytearray(b"\x5a" * (1 << 20)))
    if kind == "unix":
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    else:
        ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(("127.0.0.1", port))
        ls.listen(1)
        a = socket.create_connection(("127.0.0.1", port))
        b, _ = ls.accept()
        ls.close()
    if fresh:
        mfd = os.memfd_create("bench-dst")
        os.ftruncate(mfd, nbytes)
        ram = mmap.mmap(mfd, nbytes)
        view = memoryview(ram)
    else:
        view = memoryview(bytearray(1 << 20))

    def rx():
        got = 0
        while got < nbytes:
            n = b.recv_into(view[got:got + (1 << 20)] if fresh else view)
            if not n:
                break
            got += n

    t = threading.Thread(target=rx)
    t0 = time.perf_counter()
    t.start()
    sent = 0
    while sent < nbytes:
        a.sendall(chunk)
        sent += len(chunk)
    t.join()
    dt = time.perf_counter() - t0
    a.close()
    b.close()
    if fresh:
        view.release()
        ram.close()
        os.close(mfd)
    return dt


# ------------------------------------------------------------------ vmm

def ctl(vmm, sock, verb, data=None):
    cmd = [vmm, "ctl", "--api-sock", sock, verb] + (["--data", data] if data else [])
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
    try:
        return json.loads(p.stdout.decode() or "{}")
    except ValueError:
        return {}


def wait_api(vmm, sock, timeout=10):
    end = time.time() + timeout
    while time.time() < end:
        if os.path.exists(sock) and ctl(vmm, sock, "vmm.ping").get("pid"):
            return True
        time.sleep(0.02)
    return False


def gap_us(text):
    m = re.search(r"PASS memtest max_gap_us=(\d+)", text)
    return int(m.group(1)) if m else None


def vmm_migrate(args, tmp, url, cmdline, mem_mib, cpus, local=False, warm=1.5):
    src_sock, dst_sock = os.path.join(tmp, "src.sock"), os.path.join(tmp, "dst.sock")
    src = subprocess.Popen([args.vmm, "serve", "--api-sock", src_sock], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)
    dst = subprocess.Popen([args.vmm, "run", "--incoming", url], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)
    res = {"ok": False}
    try:
        if not wait_api(args.vmm, src_sock):
            raise RuntimeError("vmm serve did not start")
        cfg = {"kernel": args.guest, "cmdline": cmdline, "cpus": cpus, "memory_mib": mem_mib}
        ctl(args.vmm, src_sock, "vm.create", json.dumps(cfg))
        ctl(args.vmm, src_sock, "vm.boot")
        time.sleep(warm)
        body = {"destination_url": url, "downtime_ms": DOWNTIME_MS}
        if local:
            body["local"] = True
        r = ctl(args.vmm, src_sock, "vm.send-migration", json.dumps(body))
        if r.get("migration") != "active":
            raise RuntimeError("vm.send-migration: %s" % r)
        end = time.time() + 120
        mig = {}
        while time.time() < end:
            mig = ctl(args.vmm, src_sock, "vm.info").get("migration", {})
            if mig.get("status") not in (None, "active"):
                break
            time.sleep(0.05)
        if mig.get("status") != "completed":
            raise RuntimeError("migration %s: %s" % (mig.get("status"), mig.get("message")))
        if "memtest" not in cmdline:
            dst.kill()  # the idle guest has nothing to report: do not wait out its ticks
        out, err = dst.communicate(timeout=180)
        res = {"ok": True, "total_ms": mig["total_us"] / 1e3, "downtime_ms": mig["downtime_us"] / 1e3,
               "bytes_sent": mig["bytes_sent"], "passes": mig["pass"] + 1,
               "throughput_bytes_per_s": mig["bandwidth_bytes_per_s"],
               "pause_breakdown_us": {k: mig.get(k) for k in ("stop_vcpus_us", "last_pass_us", "state_save_us",
                                                            "dest_ack_us")},
               "guest_gap_ms": (gap_us(out.decode()) or 0) / 1e3 if "memtest" in cmdline else None,
               "guest_exit": dst.returncode if "memtest" in cmdline else None}
    except Exception as e:  # noqa: BLE001 - report and go on with the other cases
        res["error"] = str(e)
        log("vmm", url, cmdline, "failed:", e)
    finally:
        ctl(args.vmm, src_sock, "vmm.shutdown")
        for p in (src, dst):
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    return res


def vmm_throughput(args, tmp, url, mem_mib, connections=1):
    """Transfer rate with the vCPUs out of the way: memtest writes every page
    (so RAM is full of non-zero data), is paused, then migrated (one pass)."""
    src_sock = os.path.join(tmp, "tsrc.sock")
    src = subprocess.Popen([args.vmm, "serve", "--api-sock", src_sock], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)
    dst = subprocess.Popen([args.vmm, "run", "--incoming", url], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    res = {"ok": False}
    try:
        if not wait_api(args.vmm, src_sock):
            raise RuntimeError("vmm serve did not start")
        cfg = {"kernel": args.guest, "cmdline": "test=memtest seconds=120 cpus=2", "cpus": 2, "memory_mib": mem_mib}
        ctl(args.vmm, src_sock, "vm.create", json.dumps(cfg))
        ctl(args.vmm, src_sock, "vm.boot")
        time.sleep(8)
        ctl(args.vmm, src_sock, "vm.pause")
        ctl(args.vmm, src_sock, "vm.send-migration", json.dumps({"destination_url": url,
                                                                 "connections": connections}))
        end, mig = time.time() + 120, {}
        while time.time() < end:
            mig = ctl(args.vmm, src_sock, "vm.info").get("migration", {})
            if mig.get("status") not in (None, "active"):
                break
            time.sleep(0.05)
        if mig.get("status") != "completed":
            raise RuntimeError("migration %s: %s" % (mig.get("status"), mig.get("message")))
        res = {"ok": True, "bytes_sent": mig["bytes_sent"], "total_ms": mig["total_us"] / 1e3,
               "throughput_bytes_per_s": mig["bandwidth_bytes_per_s"]}
    except Exception as e:  # noqa: BLE001
        res["error"] = str(e)
        log("throughput", url, "failed:", e)
    finally:
        ctl(args.vmm, src_sock, "vmm.shutdown")
        dst.kill()
        for p in (src, dst):
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    return res


# ------------------------------------------------------------------ QEMU

class Qmp:
    def __init__(self, path):
        end = time.time() + 10
        while True:
            try:
                self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.s.connect(path)
                break
            except OSError:
                if time.time() > end:
                    raise
                time.sleep(0.02)
        self.f = self.s.makefile("rwb")
        json.loads(self.f.readline())
        self.cmd("qmp_capabilities")

    events = None

    def cmd(self, name, **arguments):
        self.f.write(json.dumps({"execute": name, "arguments": arguments}).encode() + b"\n")
        self.f.flush()
        while True:
            r = json.loads(self.f.readline())
            if "event" in r:
                self.events = (self.events or []) + [r]
            if "return" in r or "error" in r:
                return r

    def event_time_us(self, name):
        """Host time (us) of the first event @name seen so far (QMP stamps each)."""
        for e in self.events or []:
            if e["event"] == name:
                return e["timestamp"]["seconds"] * 1000000 + e["timestamp"]["microseconds"]
        return None

    def close(self):
        self.s.close()


def qemu_migrate(args, tmp, url, cmdline, mem_mib, cpus, warm=1.5):
    qmp_path, dqmp_path = os.path.join(tmp, "qmp.sock"), os.path.join(tmp, "dqmp.sock")
    common = [args.qemu] + QEMU_BASE + ["-m", str(mem_mib), "-smp", str(cpus), "-kernel", args.guest,
                                        "-append", cmdline]
    src = subprocess.Popen(common + ["-qmp", "unix:%s,server=on,wait=off" % qmp_path],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    dst = subprocess.Popen(common + ["-qmp", "unix:%s,server=on,wait=off" % dqmp_path, "-incoming", url],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    res = {"ok": False}
    q = dq = None
    try:
        q = Qmp(qmp_path)
        dq = Qmp(dqmp_path)
        time.sleep(warm)
        # QEMU 7.2 throttles migration to 128 MiB/s by default (max-bandwidth):
        # lift it, as vmm has no throttle. Throttled, the busy 1 GiB guest did
        # not converge before memtest ended its 20 s and the QEMU source exited.
        r = q.cmd("migrate-set-parameters", **{"downtime-limit": DOWNTIME_MS, "max-bandwidth": QEMU_MAX_BANDWIDTH})
        if "error" in r:
            raise RuntimeError("migrate-set-parameters: %s" % r["error"])
        r = q.cmd("migrate", uri=url)
        if "error" in r:
            raise RuntimeError(r["error"])
        end = time.time() + 120
        st = {}
        while time.time() < end:
            st = q.cmd("query-migrate")["return"]
            if st.get("status") in ("completed", "failed", "cancelled"):
                break
            time.sleep(0.05)
        if st.get("status") != "completed":
            raise RuntimeError("QEMU migration: %s" % st)
        # Guest-visible downtime, in us: the source's STOP event (its vCPUs
        # are stopped) to the destination's RESUME (they are about to run).
        # QEMU's own "downtime" is whole ms and ends when the source has sent
        # the last byte, before the destination loads the device state.
        stop_us = q.event_time_us("STOP")
        for _ in range(100):
            resume_us = dq.event_time_us("RESUME")
            if resume_us:
                break
            dq.cmd("query-status")
            time.sleep(0.01)
        q.cmd("quit")
        if "memtest" not in cmdline:
            dst.kill()
        out, err = dst.communicate(timeout=180)
        ram = st.get("ram", {})
        res = {"ok": True, "total_ms": st.get("total-time"), "downtime_ms": st.get("downtime"),
               "stop_to_resume_ms": (resume_us - stop_us) / 1e3 if stop_us and resume_us else None,
               "bytes_sent": ram.get("transferred"),
               "throughput_bytes_per_s": ram.get("mbps", 0) * 1e6 / 8,
               "guest_gap_ms": (gap_us(out.decode()) or 0) / 1e3 if "memtest" in cmdline else None,
               "guest_exit": dst.returncode if "memtest" in cmdline else None}
    except Exception as e:  # noqa: BLE001
        if src.poll() is not None:  # say why QEMU went away (e.g. the guest ended or failed)
            tail = (src.stdout.read() or b"")[-200:].decode(errors="replace").strip()
            e = "%s; QEMU source exited with %s; console: %s" % (e, src.returncode, tail)
        res["error"] = str(e)
        log("qemu", url, cmdline, "failed:", e)
    finally:
        for c in (q, dq):
            if c:
                c.close()
        for p in (src, dst):
            if p.poll() is None:
                p.kill()
            p.wait()
    return res


# ------------------------------------------------------------------ main

def median_run(results, key):
    """The run whose @key is the median of the successful ones, with every
    run's value in @key + "_runs"; the first failure if none succeeded."""
    ok = sorted((r for r in results if r.get("ok") and r.get(key) is not None), key=lambda r: r[key])
    if not ok:
        return results[0]
    best = dict(ok[len(ok) // 2])
    best[key + "_runs"] = [r[key] for r in ok]
    best["failed_runs"] = len(results) - len(ok)
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--vmm", required=True)
    ap.add_argument("--guest", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--mem-mib", type=int, default=1024)
    ap.add_argument("--no-qemu", action="store_true")
    ap.add_argument("--idle-runs", type=int, default=5, help="runs per idle case (median reported)")
    args = ap.parse_args()
    args.qemu = None if args.no_qemu else shutil.which("qemu-system-x86_64")
    if not os.path.exists("/dev/kvm"):
        json.dump({"skipped": "no /dev/kvm"}, open(args.out, "w"))
        log("no /dev/kvm; skipped")
        return 0

    port = 30000 + os.getpid() % 20000
    loads = {
        "idle": ("test=irq ticks=20000 period_us=1000", 1),
        "busy": ("test=memtest seconds=20 cpus=2", 2),
    }
    res = {"memory_mib": args.mem_mib, "downtime_limit_ms": DOWNTIME_MS, "socket_limit": {},
           "socket_limit_fresh_memory": {}, "load_average": open("/proc/loadavg").read().split()[:3], "cases": [],
           "live_update": []}
    for kind in ("unix", "tcp"):
        best = min(socket_copy(kind, args.mem_mib << 20, port + 90) for _ in range(3))
        res["socket_limit"][kind] = {"seconds": best, "bytes_per_s": (args.mem_mib << 20) / best}
        best = min(socket_copy(kind, args.mem_mib << 20, port + 91, fresh=True) for _ in range(3))
        res["socket_limit_fresh_memory"][kind] = {"seconds": best, "bytes_per_s": (args.mem_mib << 20) / best}
    # Guest-visible gaps need a baseline: the same memtest, never migrated.
    # Emulated vCPUs on a 2-core host see scheduling gaps of tens of ms.
    p = subprocess.run([args.vmm, "run", "--kernel", args.guest, "--cmdline", loads["busy"][0], "--cpus", "2",
                        "--memory", str(args.mem_mib)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
    res["baseline_guest_gap_ms"] = (gap_us(p.stdout.decode()) or 0) / 1e3
    with tempfile.TemporaryDirectory(prefix="vmm-bench-mig-") as tmp:
        for kind in ("unix", "tcp"):
            for load, (cmdline, cpus) in loads.items():
                port += 1
                url = "unix:%s/m.sock" % tmp if kind == "unix" else "tcp:127.0.0.1:%d" % port
                case = {"transport": kind, "load": load}
                # Idle downtimes are sub-millisecond and scheduling noise is
                # not: repeat, keep the run with the median downtime and all
                # the values. A busy run takes long enough to say it once.
                runs = args.idle_runs if load == "idle" else 1
                case["vmm"] = median_run([vmm_migrate(args, tmp, url, cmdline, args.mem_mib, cpus)
                                          for _ in range(runs)], "downtime_ms")
                if args.qemu:
                    qres = []
                    for _ in range(runs):
                        port += 1
                        qurl = "unix:%s/q.sock" % tmp if kind == "unix" else "tcp:127.0.0.1:%d" % port
                        qres.append(qemu_migrate(args, tmp, qurl, cmdline, args.mem_mib, cpus))
                    case["qemu"] = median_run(qres, "stop_to_resume_ms")
                lim = res["socket_limit"][kind]["bytes_per_s"]
                tp = case["vmm"].get("throughput_bytes_per_s")
                case["vmm_throughput_vs_socket"] = tp / lim if tp else None
                q = case.get("qemu", {})
                if case["vmm"].get("ok") and q.get("ok") and case["vmm"]["downtime_ms"] > 0:
                    case["qemu_over_vmm_downtime"] = q["downtime_ms"] / case["vmm"]["downtime_ms"]
                    if q.get("stop_to_resume_ms"):
                        case["qemu_stop_to_resume_over_vmm_downtime"] = (q["stop_to_resume_ms"] /
                                                                         case["vmm"]["downtime_ms"])
                res["cases"].append(case)
        res["throughput"] = {}
        for kind in ("unix", "tcp"):
            for conns in (1, 2):
                port += 1
                url = "unix:%s/t.sock" % tmp if kind == "unix" else "tcp:127.0.0.1:%d" % port
                t = vmm_throughput(args, tmp, url, args.mem_mib, conns)
                lim = res["socket_limit"][kind]["bytes_per_s"]
                fresh = res["socket_limit_fresh_memory"][kind]["bytes_per_s"]
                t["vs_socket_limit"] = t["throughput_bytes_per_s"] / lim if t.get("ok") else None
                t["vs_socket_limit_fresh_memory"] = t["throughput_bytes_per_s"] / fresh if t.get("ok") else None
                res["throughput"]["%s x%d" % (kind, conns)] = t
        for gib in (1, 4):
            r = vmm_migrate(args, tmp, "unix:%s/lu.sock" % tmp, "test=memtest seconds=4 cpus=2", gib * 1024, 2,
                            local=True, warm=1.0)
            r["memory_gib"] = gib
            res["live_update"].append(r)

    json.dump(res, open(args.out, "w"), indent=2)
    print("\nlive migration, %d MiB guest, downtime limit %d ms" % (args.mem_mib, DOWNTIME_MS))
    print("vmm pause: source pauses -> destination confirms it runs the guest; QEMU down: its own figure\n"
          "(whole ms, source side only); QEMU stop->run: source STOP event -> destination RESUME event.\n"
          "Idle rows: median of %d runs." % args.idle_runs)
    print("%-5s %-5s | %9s %9s %9s %8s | %9s %9s %9s %9s | %6s %6s" % (
        "xport", "load", "vmm total", "vmm pause", "guest gap", "tput/lim", "qemu tot", "qemu down",
        "q stop-run", "guest gap", "q/v", "qs/v"))
    fmt = lambda v, f="%.1f": (f % v) if isinstance(v, (int, float)) else "-"
    for c in res["cases"]:
        v, q = c["vmm"], c.get("qemu", {})
        print("%-5s %-5s | %9s %9s %9s %8s | %9s %9s %9s %9s | %6s %6s" % (
            c["transport"], c["load"], fmt(v.get("total_ms")), fmt(v.get("downtime_ms"), "%.2f"),
            fmt(v.get("guest_gap_ms")), fmt(c.get("vmm_throughput_vs_socket"), "%.2f"), fmt(q.get("total_ms")),
            fmt(q.get("downtime_ms")), fmt(q.get("stop_to_resume_ms"), "%.2f"), fmt(q.get("guest_gap_ms")),
            fmt(c.get("qemu_over_vmm_downtime"), "%.1fx"),
            fmt(c.get("qemu_stop_to_resume_over_vmm_downtime"), "%.1fx")))
    for k, t in res["throughput"].items():
        print("throughput %-7s (paused 1 GiB memtest guest, one pass): %s MiB/s = %s of the socket limit, "
              "%s of it into fresh memory" % (
                  k, fmt((t.get("throughput_bytes_per_s") or 0) / (1 << 20), "%.0f"), fmt(t.get("vs_socket_limit"), "%.2f"),
                  fmt(t.get("vs_socket_limit_fresh_memory"), "%.2f")))
    print("baseline guest gap (memtest, never migrated): %.1f ms" % res["baseline_guest_gap_ms"])
    for k, v in res["socket_limit"].items():
        print("socket limit %-4s: %.0f MiB/s (into fresh memory: %.0f MiB/s)" % (
            k, v["bytes_per_s"] / (1 << 20), res["socket_limit_fresh_memory"][k]["bytes_per_s"] / (1 << 20)))
    print("load average at the start: %s" % " ".join(res["load_average"]))
    for r in res["live_update"]:
        print("live update %d GiB: pause %s ms, guest gap %s ms" % (r["memory_gib"], fmt(r.get("downtime_ms"), "%.2f"),
                                                                   fmt(r.get("guest_gap_ms"))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
