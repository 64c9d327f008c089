#!/usr/bin/env python3
"""Snapshot/restore benchmark, vmm side by side with QEMU in the same run.

For each guest size (256 MiB, 1 GiB, 4 GiB by default) the `memtest` test
guest runs for a moment (so it has written memory), then:
  vmm:  `vmm serve` + vm.snapshot (pause, write DIR/{state.dtb,config.json,memory});
        restore = launch of `vmm run --restore DIR --restore-memory lazy|copy`
        until its vCPUs run (the VMM prints restore_to_running_us when it resumes;
        we also time process launch -> that line).
  QEMU: QMP stop + migrate to "exec:cat > FILE" (snapshot);
        restore = launch of QEMU with -incoming "exec:cat FILE" until
        query-status says running.
Writes JSON (build/bench/snapshot.json) and prints a table with ratios."""
import argparse, json, os, re, shutil, signal, socket, statistics, subprocess, sys, tempfile, time

QEMU_ARGS = ["-M", "microvm,x-option-roms=off,rtc=off,isa-serial=on", "-accel", "kvm",
             "-cpu", "host,-arch-capabilities", "-nodefaults", "-no-reboot", "-display", "none",
             "-device", "isa-debug-exit,iobase=0xf4,iosize=4"]
GUEST_CMDLINE = "test=memtest seconds=600"
RUN_BEFORE_SNAPSHOT_S = 1.0


def ctl(vmm, sock, verb, data=None):
    cmd = [vmm, "ctl", "--api-sock", sock, verb] + (["--data", json.dumps(data)] if data else [])
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=300)
    if p.returncode != 0:
        raise RuntimeError(f"vmm ctl {verb}: {p.stderr.decode().strip()}")
    return json.loads(p.stdout)


def wait_path(path, timeout=10.0):
    end = time.time() + timeout
    while not os.path.exists(path):
        if time.time() > end:
            raise RuntimeError(f"{path} did not appear")
        time.sleep(0.002)


def vmm_snapshot(vmm, guest, mib, work):
    sock, snap = os.path.join(work, "vmm.sock"), os.path.join(work, f"vmm-snap-{mib}")
    srv = subprocess.Popen([vmm, "serve", "--api-sock", sock], stdout=subprocess.DEVNULL)
    try:
        wait_path(sock)
        ctl(vmm, sock, "vm.create", {"kernel": guest, "cmdline": GUEST_CMDLINE, "cpus": 1,
                                     "memory_mib": mib, "console": "none"})
        ctl(vmm, sock, "vm.boot")
        time.sleep(RUN_BEFORE_SNAPSHOT_S)
        t0 = time.perf_counter()
        reply = ctl(vmm, sock, "vm.snapshot", {"destination": snap})
        wall = time.perf_counter() - t0
        ctl(vmm, sock, "vmm.shutdown")
        srv.wait(timeout=30)
    finally:
        if srv.poll() is None:
            srv.kill()
            srv.wait()
    du = sum(os.stat(os.path.join(snap, f)).st_blocks * 512 for f in os.listdir(snap))
    return snap, {"snapshot_ms": reply["snapshot_ms"], "snapshot_request_ms": wall * 1e3,
                  "memory_data_bytes": reply["memory_bytes_written"], "disk_bytes": du}


def vmm_restore_once(vmm, snap, mode):
    env = dict(os.environ, VMM_REPORT_RESTORE="1")
    t0 = time.perf_counter()
    p = subprocess.Popen([vmm, "run", "--restore", snap, "--restore-memory", mode, "--console", "none"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    inner = cpu = None
    for line in p.stderr:
        m = re.search(rb"restore_to_running_us=(\d+) restore_cpu_us=(\d+)", line)
        if m:
            inner, cpu = int(m.group(1)) / 1e3, int(m.group(2)) / 1e3
            break
    wall = (time.perf_counter() - t0) * 1e3
    p.kill()
    p.wait()
    if inner is None:
        raise RuntimeError(f"vmm restore ({mode}) did not reach running")
    return inner, wall, cpu


class Qmp:
    def __init__(self, path, timeout=30.0):
        end = time.time() + timeout
        while True:
            try:
                self.s = socket.socket(socket.AF_UNIX)
                self.s.connect(path)
                break
            except OSError:
                self.s.close()
                if time.time() > end:
                    raise
                time.sleep(0.001)
        self.f = self.s.makefile("rb")
        self.f.readline()  # greeting
        self.cmd("qmp_capabilities")

    def cmd(self, name, **args):
        self.s.sendall(json.dumps({"execute": name, "arguments": args}).encode() + b"\n")
        while True:
            msg = json.loads(self.f.readline())
            if "return" in msg:
                return msg["return"]
            if "error" in msg:
                raise RuntimeError(f"QMP {name}: {msg['error']}")

    def close(self):
        self.s.close()


def qemu_snapshot(qemu, guest, mib, work):
    qsock, image = os.path.join(work, f"qmp-{mib}.sock"), os.path.join(work, f"qemu-{mib}.mig")
    p = subprocess.Popen([qemu] + QEMU_ARGS + ["-m", str(mib), "-kernel", guest, "-append", GUEST_CMDLINE,
                                               "-serial", "null", "-qmp", f"unix:{qsock},server=on,wait=off"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        q = Qmp(qsock)
        time.sleep(RUN_BEFORE_SNAPSHOT_S)
        t0 = time.perf_counter()
        q.cmd("stop")
        q.cmd("migrate", uri=f"exec:cat > {image}")
        while True:
            st = q.cmd("query-migrate").get("status")
            if st == "completed":
                break
            if st in ("failed", "cancelled"):
                raise RuntimeError(f"QEMU migrate {st}")
            time.sleep(0.0005)
        wall = (time.perf_counter() - t0) * 1e3
        q.cmd("quit")
        q.close()
        p.wait(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    return image, {"snapshot_ms": wall, "disk_bytes": os.stat(image).st_blocks * 512}


def qemu_restore_once(qemu, guest, mib, image, work):
    qsock = os.path.join(work, f"qmp-in-{mib}.sock")
    t0 = time.perf_counter()
    p = subprocess.Popen([qemu] + QEMU_ARGS + ["-m", str(mib), "-kernel", guest, "-append", GUEST_CMDLINE,
                                               "-serial", "null", "-qmp", f"unix:{qsock},server=on,wait=off",
                                               "-incoming", f"exec:cat {image}"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        q = Qmp(qsock)
        while True:
            st = q.cmd("query-status").get("status")
            if st == "running":
                break
            # The source was stopped before migrating, so QEMU keeps the
            # incoming VM paused: resuming it is part of restore-to-running.
            if st in ("paused", "postmigrate"):
                q.cmd("cont")
            elif st not in ("inmigrate", "prelaunch", "restore-vm"):
                raise RuntimeError(f"QEMU incoming VM is {st}")
            time.sleep(0.0005)
        wall = (time.perf_counter() - t0) * 1e3
        q.close()
    finally:
        p.kill()
        p.wait()
    return wall


def med(xs):
    return statistics.median(xs) if xs else None


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--vmm", required=True)
    ap.add_argument("--guest", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--sizes", default="256,1024,4096", help="guest RAM sizes in MiB")
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    if not os.path.exists("/dev/kvm"):
        json.dump({"skipped": "no /dev/kvm"}, open(args.out, "w"))
        print("bench-snapshot: /dev/kvm missing; skipped")
        return 0
    qemu = shutil.which("qemu-system-x86_64")
    vmm, guest = os.path.abspath(args.vmm), os.path.abspath(args.guest)
    results = []
    with tempfile.TemporaryDirectory(prefix="vmm-bench-snap-", dir=os.environ.get("BENCH_TMPDIR", "/var/tmp")) as work:
        for mib in [int(s) for s in args.sizes.split(",")]:
            r = {"memory_mib": mib}
            snap, r["vmm"] = vmm_snapshot(vmm, guest, mib, work)
            for mode in ("lazy", "copy"):
                inner, wall, cpu = [], [], []
                for _ in range(args.runs):
                    i, w, c = vmm_restore_once(vmm, snap, mode)
                    inner.append(i)
                    wall.append(w)
                    cpu.append(c)
                r["vmm"][f"restore_{mode}_ms"] = med(inner)
                r["vmm"][f"restore_{mode}_min_ms"] = min(inner)
                r["vmm"][f"restore_{mode}_cpu_ms"] = med(cpu)
                r["vmm"][f"restore_{mode}_launch_to_running_ms"] = med(wall)
            shutil.rmtree(snap)
            if qemu:
                try:
                    image, r["qemu"] = qemu_snapshot(qemu, guest, mib, work)
                    r["qemu"]["restore_launch_to_running_ms"] = med(
                        [qemu_restore_once(qemu, guest, mib, image, work) for _ in range(args.runs)])
                    os.unlink(image)
                except Exception as e:  # keep the vmm figures; say why QEMU is missing
                    r["qemu"] = {"error": str(e)}
            q = r.get("qemu", {})
            if "restore_launch_to_running_ms" in q:
                r["ratio_restore_lazy_vs_qemu"] = q["restore_launch_to_running_ms"] / r["vmm"]["restore_lazy_launch_to_running_ms"]
                r["ratio_restore_copy_vs_qemu"] = q["restore_launch_to_running_ms"] / r["vmm"]["restore_copy_launch_to_running_ms"]
                r["ratio_snapshot_vs_qemu"] = q["snapshot_ms"] / r["vmm"]["snapshot_request_ms"]
            results.append(r)
            print(json.dumps(r), flush=True)
    out = {"runs": args.runs, "guest": GUEST_CMDLINE, "results": results,
           "targets": {"lazy_restore_ms_max": 5, "restore_speedup_vs_qemu_at_1GiB_min": 20},
           "host_loadavg": os.getloadavg(),
           "notes": "restore_*_cpu_ms: CPU time the restore used (insensitive to a loaded host); restore_*_ms: inside vmm, from the start of restore to running vCPUs; "
                    "*_launch_to_running_ms: process launch to running, for both vmm and QEMU; "
                    "ratios are QEMU time / vmm time (launch to running)."}
    json.dump(out, open(args.out, "w"), indent=2)
    for r in results:
        v = r["vmm"]
        print(f"{r['memory_mib']:>5}M vmm restore CPU time: lazy {v['restore_lazy_cpu_ms']:.2f} ms, "
              f"copy {v['restore_copy_cpu_ms']:.2f} ms; best wall lazy {v['restore_lazy_min_ms']:.2f} ms")
    print(f"\n{'RAM':>6} | {'vmm snap':>9} {'lazy':>7} {'lazy*':>7} {'copy':>7} {'copy*':>7} | "
          f"{'qemu snap':>9} {'restore*':>9} | {'x lazy':>7} {'x copy':>7}")
    for r in results:
        v, q = r["vmm"], r.get("qemu", {})
        f = lambda x: f"{x:7.2f}" if isinstance(x, (int, float)) else f"{'-':>7}"
        print(f"{r['memory_mib']:>5}M | {v['snapshot_ms']:9.2f} {f(v['restore_lazy_ms'])} "
              f"{f(v['restore_lazy_launch_to_running_ms'])} {f(v['restore_copy_ms'])} "
              f"{f(v['restore_copy_launch_to_running_ms'])} | {f(q.get('snapshot_ms')):>9} "
              f"{f(q.get('restore_launch_to_running_ms')):>9} | {f(r.get('ratio_restore_lazy_vs_qemu'))} "
              f"{f(r.get('ratio_restore_copy_vs_qemu'))}")
    print("(ms; * = process launch to running; x = QEMU restore time / vmm restore time)")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
