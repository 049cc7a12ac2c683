// Validates Kubernetes manifests against the official OpenAPI schemas (kubernetes-models), then
// checks what the hostagent DaemonSet must have (ARCHITECTURE.md, issue 6) and the field names of
// the workload specs ocreconciler renders.
//   node validate.mjs [--shutdown-timeout=S] FILE.yaml...
import { readFileSync } from "node:fs";
import * as yaml from "js-yaml";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";

let shutdownTimeout = 20;
const files = [];
for (const a of process.argv.slice(2)) {
  if (a.startsWith("--shutdown-timeout=")) shutdownTimeout = Number(a.split("=")[1]);
  else files.push(a);
}

const errors = [];
const fail = (where, msg) => errors.push(`${where}: ${msg}`);

async function modelFor(doc) {
  const [group, version] = doc.apiVersion.includes("/")
    ? doc.apiVersion.split("/")
    : [null, doc.apiVersion];
  const mod = await import(group ? `kubernetes-models/${group}/${version}` : `kubernetes-models/${version}`);
  const M = mod[doc.kind];
  if (!M) throw new Error(`unknown kind ${doc.apiVersion} ${doc.kind}`);
  return M;
}

// The compiled schemas accept unknown fields (as the API server drops them silently): a field
// that does not exist, say a pod-level cgroup namespace, would pass. Check the fields of the
// objects this project writes against the property names each compiled schema validates.
const schemaDir = join(dirname(createRequire(import.meta.url).resolve("kubernetes-models/package.json")), "_schemas");
const known = new Map();
function knownFields(type) {
  if (!known.has(type)) {
    const text = readFileSync(join(schemaDir, `${type}.mjs`), "utf8");
    known.set(type, new Set([...text.matchAll(/instancePath\+"\/(\w+)"/g)].map((m) => m[1])));
  }
  return known.get(type);
}
function strict(where, path, obj, type) {
  if (!obj || typeof obj !== "object") return;
  for (const k of Object.keys(obj))
    if (!knownFields(type).has(k)) fail(where, `${path}.${k}: no such field in ${type}`);
}

function checkDaemonSet(where, ds) {
  const spec = ds.spec.template.spec;
  strict(where, "spec", ds.spec, "IoK8sApiAppsV1DaemonSetSpec");
  strict(where, "spec.template.spec", spec, "IoK8sApiCoreV1PodSpec");
  for (const c of spec.containers) {
    strict(where, `container ${c.name}`, c, "IoK8sApiCoreV1Container");
    strict(where, `container ${c.name} securityContext`, c.securityContext, "IoK8sApiCoreV1SecurityContext");
    for (const m of c.volumeMounts || []) strict(where, `container ${c.name} volumeMount`, m, "IoK8sApiCoreV1VolumeMount");
  }
  for (const v of spec.volumes || []) strict(where, `volume ${v.name}`, v, "IoK8sApiCoreV1Volume");
  for (const k of ["hostPID", "hostNetwork", "hostIPC"])
    if (spec[k] !== true) fail(where, `${k} must be true`);
  if (!(spec.terminationGracePeriodSeconds > shutdownTimeout))
    fail(where, `terminationGracePeriodSeconds ${spec.terminationGracePeriodSeconds} not above shutdown_timeout ${shutdownTimeout}`);
  if (ds.spec.updateStrategy?.type !== "RollingUpdate") fail(where, "updateStrategy must be RollingUpdate");
  const byName = Object.fromEntries(spec.containers.map((c) => [c.name, c]));
  for (const n of ["agent", "libvirt"]) if (!byName[n]) fail(where, `container ${n} missing`);
  const images = new Set(spec.containers.map((c) => c.image));
  if (images.size !== 1) fail(where, "agent and libvirt must run one image");
  for (const c of spec.containers)
    if (c.securityContext?.privileged !== true) fail(where, `container ${c.name} must be privileged`);
  const a = byName.agent;
  if (a) {
    const probe = (p) => p?.httpGet && `${p.httpGet.path}:${p.httpGet.port}`;
    if (probe(a.startupProbe) !== "/ping:8885") fail(where, "agent startupProbe must be GET /ping on 8885");
    if (probe(a.readinessProbe) !== "/readyz:8885") fail(where, "agent readinessProbe must be GET /readyz on 8885");
    if (probe(a.livenessProbe) !== "/healthz:8885") fail(where, "agent livenessProbe must be GET /healthz on 8885");
  }
  const vols = Object.fromEntries(spec.volumes.map((v) => [v.name, v]));
  const hostPathOf = (c, mountPath) => {
    const m = (c.volumeMounts || []).find((m) => m.mountPath === mountPath);
    return m && vols[m.name]?.hostPath ? { path: vols[m.name].hostPath.path, ro: !!m.readOnly } : null;
  };
  const need = {
    agent: ["/run/libvirt", "/var/lib/libvirt", "/var/log/libvirt", "/opt/cloud/workspace",
      "/var/lib/hostagent", "/run/hostagent", "/lib/modules", "/run/dbus", "/sys/fs/cgroup", "/dev"],
    libvirt: ["/run/libvirt", "/var/lib/libvirt", "/etc/libvirt/qemu", "/var/log/libvirt",
      "/opt/cloud/workspace", "/sys/fs/cgroup", "/dev"],
  };
  for (const [cn, paths] of Object.entries(need)) {
    if (!byName[cn]) continue;
    for (const p of paths) {
      const hp = hostPathOf(byName[cn], p);
      if (!hp) fail(where, `container ${cn}: ${p} must be a hostPath mount`);
      else if (hp.path !== p) fail(where, `container ${cn}: ${p} mounts host ${hp.path}`);
      else if (p === "/lib/modules" && !hp.ro) fail(where, `container ${cn}: /lib/modules must be read-only`);
    }
  }
}

// The pod specs and specs of the other workload kinds (ocreconciler renders them), field names
// checked as for the DaemonSet.
function podSpecFields(where, path, spec) {
  if (!spec) return;
  strict(where, path, spec, "IoK8sApiCoreV1PodSpec");
  for (const c of spec.containers || []) {
    const cp = `${path} container ${c.name}`;
    strict(where, cp, c, "IoK8sApiCoreV1Container");
    for (const p of ["startupProbe", "readinessProbe", "livenessProbe"])
      strict(where, `${cp} ${p}`, c[p], "IoK8sApiCoreV1Probe");
    for (const m of c.volumeMounts || []) strict(where, `${cp} volumeMount`, m, "IoK8sApiCoreV1VolumeMount");
    for (const e of c.env || []) strict(where, `${cp} env`, e, "IoK8sApiCoreV1EnvVar");
    for (const p of c.ports || []) strict(where, `${cp} port`, p, "IoK8sApiCoreV1ContainerPort");
  }
  for (const v of spec.volumes || []) strict(where, `${path} volume ${v.name}`, v, "IoK8sApiCoreV1Volume");
}
function workloadFields(where, doc) {
  const spec = doc.spec;
  switch (doc.kind) {
    case "Deployment":
      strict(where, "spec", spec, "IoK8sApiAppsV1DeploymentSpec");
      podSpecFields(where, "spec.template.spec", spec?.template?.spec);
      break;
    case "CronJob":
      strict(where, "spec", spec, "IoK8sApiBatchV1CronJobSpec");
      strict(where, "spec.jobTemplate.spec", spec?.jobTemplate?.spec, "IoK8sApiBatchV1JobSpec");
      podSpecFields(where, "spec.jobTemplate.spec.template.spec", spec?.jobTemplate?.spec?.template?.spec);
      break;
    case "Service":
      strict(where, "spec", spec, "IoK8sApiCoreV1ServiceSpec");
      for (const p of spec?.ports || []) strict(where, "spec.ports", p, "IoK8sApiCoreV1ServicePort");
      break;
    case "PersistentVolumeClaim":
      strict(where, "spec", spec, "IoK8sApiCoreV1PersistentVolumeClaimSpec");
      break;
  }
}

for (const f of files) {
  const docs = yaml.loadAll(readFileSync(f, "utf8")).filter(Boolean);
  let n = 0;
  for (const doc of docs) {
    const where = `${f}: ${doc.kind}/${doc.metadata?.name}`;
    try {
      const M = await modelFor(doc);
      new M(doc).validate();
      n++;
    } catch (e) {
      fail(where, e.message);
    }
    // The project's own checks run on an invalid object too: report everything at once.
    try {
      // ocreconciler names it <cluster>-hostagent: the label says what it is.
      if (doc.kind === "DaemonSet" &&
        (doc.metadata?.name === "hostagent" || doc.metadata?.labels?.["app.kubernetes.io/name"] === "hostagent"))
        checkDaemonSet(where, doc);
      workloadFields(where, doc);
    } catch (e) {
      fail(where, `malformed: ${e.message}`);
    }
  }
  console.log(`# ${f}: ${n} object(s) valid against the Kubernetes schema`);
}
if (errors.length) {
  for (const e of errors) console.error(`FAIL ${e}`);
  process.exit(1);
}
