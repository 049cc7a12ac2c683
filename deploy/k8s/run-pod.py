#!/usr/bin/env python3
"""Runs the containers of the hostagent DaemonSet pod with podman, reading every setting from
the manifest (deploy/k8s/hostagent-daemonset.yaml) so tests and hand runs do not repeat them:
host PID/network/IPC namespaces, privileged, command, args, env, hostPath and configMap volumes,
and the private cgroup namespace a Kubernetes runtime gives a pod (a pod spec cannot ask for the
host's). Both containers go under one parent cgroup that stands for the pod's.

  run-pod.py [options] start [CONTAINER...]    podman run -d each container (default: all)
  run-pod.py [options] kill [CONTAINER...]     podman kill (SIGKILL to the whole cgroup), rm
  run-pod.py [options] stop [CONTAINER...]     podman stop -t terminationGracePeriodSeconds, rm;
                                               prints "NAME exit=CODE seconds=S" per container
  run-pod.py [options] restart [CONTAINER...]  kill, then start
  run-pod.py [options] print [CONTAINER...]    the podman run command lines

Options:
  --manifest FILE     default: hostagent-daemonset.yaml next to this script
  --image IMAGE       override the manifest's image (e.g. localhost/hostagent:test)
  --prefix NAME       container names are NAME-<container> (default: hostagent)
  --map HOST=OTHER    use host path OTHER for the manifest's hostPath HOST (repeatable): tests
                      keep /run/libvirt, /var/lib/libvirt... away from a libvirtd on the host
  --env K=V           extra environment for every container (repeatable)
  --cgroup-parent CG  the pod's cgroup (default: /kubepods/pod-<prefix>)
  --state-dir DIR     where configMap data is written (default: /run/hostagent-pod/<prefix>)

Needs python3-yaml (apt-get install python3-yaml).
"""
import argparse
import os
import subprocess
import sys
import time

try:
    import yaml
except ImportError:
    sys.exit("run-pod.py: python3-yaml is missing (apt-get install python3-yaml)")


def load(manifest):
    with open(manifest) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    ds = next((d for d in docs if d.get("kind") == "DaemonSet"), None)
    if not ds:
        sys.exit(f"run-pod.py: no DaemonSet in {manifest}")
    cms = {d["metadata"]["name"]: d for d in docs if d.get("kind") == "ConfigMap"}
    return ds, cms


def volume_sources(spec, cms, maps, state_dir):
    """Volume name -> (host path, is_configmap)."""
    out = {}
    for v in spec.get("volumes", []):
        name = v["name"]
        if "hostPath" in v:
            hp = v["hostPath"]
            path = maps.get(hp["path"], hp["path"])
            kind = hp.get("type", "")
            if kind == "DirectoryOrCreate":
                os.makedirs(path, exist_ok=True)
            elif kind == "Directory" and not os.path.isdir(path):
                sys.exit(f"run-pod.py: hostPath {path} (volume {name}) is not a directory")
            out[name] = path
        elif "configMap" in v:
            cm = cms.get(v["configMap"]["name"])
            if not cm:
                sys.exit(f"run-pod.py: configMap {v['configMap']['name']} not in the manifest")
            d = os.path.join(state_dir, "configmap-" + name)
            os.makedirs(d, exist_ok=True)
            for key, text in (cm.get("data") or {}).items():
                with open(os.path.join(d, key), "w") as f:
                    f.write(text)
            out[name] = d
        elif "emptyDir" in v:
            d = os.path.join(state_dir, "emptydir-" + name)
            os.makedirs(d, exist_ok=True)
            out[name] = d
        else:
            sys.exit(f"run-pod.py: volume {name}: unsupported source")
    return out


def run_args(args, spec, c, vols):
    sc = c.get("securityContext") or {}
    cmd = ["podman", "run", "-d", "--name", f"{args.prefix}-{c['name']}",
           "--cgroupns=private", "--cgroup-parent", args.cgroup_parent,
           "--label", f"io.hostagent.pod={args.prefix}"]
    if sc.get("privileged"):
        cmd.append("--privileged")
    if spec.get("hostPID"):
        cmd.append("--pid=host")
    if spec.get("hostNetwork"):
        cmd.append("--network=host")
    if spec.get("hostIPC"):
        cmd.append("--ipc=host")
    for m in c.get("volumeMounts", []):
        opt = "ro" if m.get("readOnly") else "rw"
        cmd += ["-v", f"{vols[m['name']]}:{m['mountPath']}:{opt}"]
    for e in c.get("env", []):
        if "value" in e:
            cmd += ["-e", f"{e['name']}={e['value']}"]
    for e in args.env:
        cmd += ["-e", e]
    cmd.append(args.image or c["image"])
    cmd += list(c.get("command", [])) + list(c.get("args", []))
    return cmd


def podman(*argv, check=True):
    r = subprocess.run(["podman", *argv], capture_output=True, text=True)
    if check and r.returncode != 0:
        sys.exit(f"run-pod.py: podman {' '.join(argv)}: {r.stderr.strip()}")
    return r


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--manifest", default=os.path.join(here, "hostagent-daemonset.yaml"))
    p.add_argument("--image")
    p.add_argument("--prefix", default="hostagent")
    p.add_argument("--map", action="append", default=[])
    p.add_argument("--env", action="append", default=[])
    p.add_argument("--cgroup-parent")
    p.add_argument("--state-dir")
    p.add_argument("action", choices=["start", "kill", "stop", "restart", "print"])
    p.add_argument("containers", nargs="*")
    args = p.parse_args()
    args.cgroup_parent = args.cgroup_parent or f"/kubepods/pod-{args.prefix}"
    state_dir = args.state_dir or f"/run/hostagent-pod/{args.prefix}"
    maps = {}
    for m in args.map:
        host, _, other = m.partition("=")
        if not host or not other:
            sys.exit(f"run-pod.py: --map {m}: expected HOST=OTHER")
        maps[host] = other

    ds, cms = load(args.manifest)
    spec = ds["spec"]["template"]["spec"]
    containers = [c for c in spec["containers"] if not args.containers or c["name"] in args.containers]
    unknown = set(args.containers) - {c["name"] for c in spec["containers"]}
    if unknown:
        sys.exit(f"run-pod.py: no container {', '.join(sorted(unknown))} in the manifest")
    grace = int(spec.get("terminationGracePeriodSeconds", 30))

    if args.action in ("kill", "stop", "restart"):
        for c in containers:
            name = f"{args.prefix}-{c['name']}"
            if args.action == "stop":
                # Report how the container ended (tests check a clean, bounded shutdown).
                t0 = time.monotonic()
                r = podman("stop", "-t", str(grace), name, check=False)
                took = time.monotonic() - t0
                if r.returncode == 0:
                    code = podman("inspect", "--format", "{{.State.ExitCode}}", name,
                                  check=False).stdout.strip()
                    print(f"{name} exit={code or '?'} seconds={took:.1f}")
            else:
                podman("kill", "--signal", "KILL", name, check=False)
            podman("rm", "-f", "-t", "0", name, check=False)
        if args.action != "restart":
            return
    if args.action in ("start", "restart", "print"):
        os.makedirs(state_dir, exist_ok=True)
        vols = volume_sources(spec, cms, maps, state_dir)
        for c in containers:
            cmd = run_args(args, spec, c, vols)
            if args.action == "print":
                print(" ".join(cmd))
                continue
            podman("rm", "-f", "-t", "0", f"{args.prefix}-{c['name']}", check=False)
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                sys.exit(f"run-pod.py: {' '.join(cmd)}: {r.stderr.strip()}")
            print(f"{args.prefix}-{c['name']} {r.stdout.strip()[:12]}")


if __name__ == "__main__":
    main()
