import { type ChildProcess, execFile, spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { readFileSync, statSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { ScaledObject } from "@kubernetes-models/keda/keda.sh/v1alpha1/ScaledObject";
import { TriggerAuthentication } from "@kubernetes-models/keda/keda.sh/v1alpha1/TriggerAuthentication";
import { Deployment } from "kubernetes-models/apps/v1/Deployment";
import { PodDisruptionBudget } from "kubernetes-models/policy/v1/PodDisruptionBudget";
import { ConfigMap } from "kubernetes-models/v1/ConfigMap";
import { Secret } from "kubernetes-models/v1/Secret";
import { Service } from "kubernetes-models/v1/Service";
import { ServiceAccount } from "kubernetes-models/v1/ServiceAccount";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse, parseAllDocuments } from "yaml";
import { loadConfig } from "../../src/config.ts";
import { defineTask, Pgwake, type Worker } from "../../src/index.ts";
import { createTestDb, databaseUrl, type TestDb } from "../helpers/db.ts";
import { freePort } from "../helpers/postgres.ts";
import { deferred, waitFor } from "../helpers/wait.ts";

// deploy/kubernetes is checked here, without a cluster and without the kustomize binary:
// 1. each kustomization is rendered by the small subset of kustomize it uses (below; any other
//    kustomize feature is refused, so a manifest cannot silently depend on one we do not apply);
// 2. every resource is validated against the Kubernetes and KEDA schemas (kubernetes-models),
//    and against their field lists, so a misspelt field is an error rather than ignored;
// 3. what a schema cannot see is checked: references, selectors, probes against the ports and
//    the settings, shutdown timing, security, every variable against the settings of the
//    command it is given to (read from `pgwake <command> --help`), and the KEDA query against
//    the workers it scales; each check is shown to catch the mistake it is for;
// 4. the containers are run as the manifests say (with writes to the filesystem forbidden, as
//    under readOnlyRootFilesystem), probed, sent a job and stopped;
// 5. the KEDA query runs against a real schema: what it counts, and no sequential scan.

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const DEPLOY = join(ROOT, "deploy/kubernetes");
const BIN = join(ROOT, "bin/pgwake.js");
const KUSTOMIZATIONS = ["base", "overlays/example", "overlays/pgbouncer"] as const;
/** What pgwake may take past its shutdown grace to exit (docs/kubernetes.md, "Graceful shutdown"). */
const SHUTDOWN_MARGIN_SECONDS = 5;
/** Paths pgwake serves for probes (README, "Health, metrics, docs"). */
const LIVENESS_PATH = "/health";
const READINESS_PATH = "/ready";

// ---- the shapes this file reads ---------------------------------------------------------------

type Labels = Record<string, string>;
interface Resource {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Labels };
  [field: string]: unknown;
}
interface KeyRef {
  name: string;
  key: string;
  optional?: boolean;
}
interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: { secretKeyRef?: KeyRef; configMapKeyRef?: KeyRef };
}
interface EnvFrom {
  configMapRef?: { name: string };
  secretRef?: { name: string };
}
interface Probe {
  httpGet?: { path?: string; port: number | string };
}
interface Container {
  name: string;
  image?: string;
  command?: string[];
  args?: string[];
  env?: EnvVar[];
  envFrom?: EnvFrom[];
  ports?: { name?: string; containerPort: number }[];
  startupProbe?: Probe;
  livenessProbe?: Probe;
  readinessProbe?: Probe;
  lifecycle?: { preStop?: { sleep?: { seconds: number }; exec?: { command: string[] } } };
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
  securityContext?: {
    runAsNonRoot?: boolean;
    runAsUser?: number;
    allowPrivilegeEscalation?: boolean;
    readOnlyRootFilesystem?: boolean;
    capabilities?: { drop?: string[] };
  };
  volumeMounts?: { name: string; mountPath: string; readOnly?: boolean }[];
}
interface PodSpec {
  containers: Container[];
  initContainers?: Container[];
  volumes?: { name: string; emptyDir?: object; configMap?: { name: string } }[];
  serviceAccountName?: string;
  automountServiceAccountToken?: boolean;
  enableServiceLinks?: boolean;
  terminationGracePeriodSeconds?: number;
  securityContext?: {
    runAsNonRoot?: boolean;
    runAsUser?: number;
    seccompProfile?: { type: string };
  };
  topologySpreadConstraints?: { labelSelector?: { matchLabels?: Labels } }[];
}
interface DeploymentResource extends Resource {
  spec: {
    replicas?: number;
    selector: { matchLabels?: Labels };
    template: { metadata?: { labels?: Labels }; spec: PodSpec };
  };
}
interface ServiceResource extends Resource {
  spec: {
    selector?: Labels;
    ports: { name?: string; port: number; targetPort?: number | string }[];
  };
}
interface PdbResource extends Resource {
  spec: { selector?: { matchLabels?: Labels } };
}
interface ConfigMapResource extends Resource {
  data?: Record<string, string>;
}
interface SecretResource extends Resource {
  stringData?: Record<string, string>;
}
interface TriggerAuthenticationResource extends Resource {
  spec: { secretTargetRef?: { parameter: string; name: string; key: string }[] };
}
interface ScaledObjectResource extends Resource {
  spec: {
    scaleTargetRef: { name: string; kind?: string; apiVersion?: string };
    minReplicaCount?: number;
    maxReplicaCount?: number;
    cooldownPeriod?: number;
    triggers: {
      type: string;
      metadata: Record<string, string>;
      authenticationRef?: { name: string; kind?: string };
    }[];
  };
}

// ---- rendering: the subset of kustomize the manifests use ---------------------------------------

const KUSTOMIZATION_FIELDS = new Set([
  "apiVersion",
  "kind",
  "resources",
  "components",
  "namespace",
  "images",
  "labels",
  "configMapGenerator",
  "patches",
]);

interface Kustomization {
  kind?: string;
  resources?: string[];
  components?: string[];
  namespace?: string;
  images?: { name: string; newName?: string; newTag?: string; digest?: string }[];
  labels?: { pairs: Labels; includeSelectors?: boolean; includeTemplates?: boolean }[];
  configMapGenerator?: { name: string; behavior?: string; literals?: string[] }[];
  patches?: { target: { kind: string; name: string }; patch: string }[];
}

/** ConfigMaps made by a generator: named with a content hash once the whole build is done. */
type Generated = WeakSet<Resource>;

/** Renders a kustomization directory (relative to deploy/kubernetes) like `kubectl kustomize`. */
function render(dir: string): Resource[] {
  const generated: Generated = new WeakSet();
  const resources = build(join(DEPLOY, dir), [], generated, "Kustomization");
  return nameGeneratedConfigMaps(resources, generated);
}

/** Refuses a kustomize feature this renderer does not apply, rather than ignoring it. */
function checkKustomization(k: Record<string, unknown>, file: string, kind: string): Kustomization {
  for (const field of Object.keys(k)) {
    if (!KUSTOMIZATION_FIELDS.has(field)) throw new Error(`${file}: unsupported field ${field}`);
  }
  if ((k.kind ?? "Kustomization") !== kind) throw new Error(`${file}: expected a ${kind}`);
  return k as Kustomization;
}

function build(dir: string, inherited: Resource[], generated: Generated, kind: string): Resource[] {
  const file = join(dir, "kustomization.yaml");
  const k = checkKustomization(parse(readFileSync(file, "utf8")), file, kind);
  let resources = [...inherited];
  for (const entry of k.resources ?? []) {
    const path = resolve(dir, entry);
    if (statSync(path).isDirectory()) {
      resources.push(...build(path, [], generated, "Kustomization"));
    } else {
      for (const doc of parseAllDocuments(readFileSync(path, "utf8"))) {
        const value = doc.toJS() as Resource | null;
        if (value) resources.push(value);
      }
    }
  }
  for (const generator of k.configMapGenerator ?? []) {
    generateConfigMap(resources, generated, generator, file);
  }
  // A component works on what its parent has accumulated so far.
  for (const entry of k.components ?? []) {
    resources = build(resolve(dir, entry), resources, generated, "Component");
  }
  for (const { target, patch } of k.patches ?? []) {
    const matches = resources.filter(
      (r) => r.kind === target.kind && r.metadata.name === target.name,
    );
    if (matches.length === 0) throw new Error(`${file}: no ${target.kind} ${target.name} to patch`);
    const ops = parse(patch) as JsonPatchOp[];
    if (!Array.isArray(ops)) throw new Error(`${file}: only JSON 6902 patches are supported`);
    for (const resource of matches) applyJsonPatch(resource, ops);
  }
  if (k.namespace) {
    for (const r of resources) r.metadata.namespace = k.namespace;
  }
  for (const { pairs, includeSelectors, includeTemplates } of k.labels ?? []) {
    for (const r of resources) addLabels(r, pairs, includeSelectors ?? false, includeTemplates);
  }
  for (const image of k.images ?? []) {
    for (const r of resources) {
      for (const container of podContainers(r)) {
        if (container.image) container.image = retag(container.image, image);
      }
    }
  }
  return resources;
}

function generateConfigMap(
  resources: Resource[],
  generated: Generated,
  generator: NonNullable<Kustomization["configMapGenerator"]>[number],
  file: string,
): void {
  const data: Record<string, string> = {};
  for (const literal of generator.literals ?? []) {
    const at = literal.indexOf("=");
    if (at < 1) throw new Error(`${file}: literal ${literal} is not KEY=value`);
    data[literal.slice(0, at)] = literal.slice(at + 1);
  }
  const behavior = generator.behavior ?? "create";
  const existing = resources.find(
    (r) => r.kind === "ConfigMap" && r.metadata.name === generator.name && generated.has(r),
  ) as ConfigMapResource | undefined;
  if (behavior === "create") {
    if (existing) throw new Error(`${file}: ConfigMap ${generator.name} is generated twice`);
    const configMap: ConfigMapResource = {
      apiVersion: "v1",
      kind: "ConfigMap",
      metadata: { name: generator.name },
      data,
    };
    generated.add(configMap);
    resources.push(configMap);
  } else if (behavior === "merge" || behavior === "replace") {
    if (!existing)
      throw new Error(`${file}: no generated ConfigMap ${generator.name} to ${behavior}`);
    existing.data = behavior === "merge" ? { ...existing.data, ...data } : data;
  } else {
    throw new Error(`${file}: unsupported generator behavior ${behavior}`);
  }
}

/**
 * Generated ConfigMaps get a content hash in their name (so a change rolls the pods reading
 * them), and the references to them follow. The hash is not kustomize's encoding; only its
 * role matters here.
 */
function nameGeneratedConfigMaps(resources: Resource[], generated: Generated): Resource[] {
  const renamed = new Map<string, string>();
  for (const r of resources) {
    if (!generated.has(r)) continue;
    const data = (r as ConfigMapResource).data ?? {};
    const sorted = Object.fromEntries(Object.entries(data).sort(([a], [b]) => a.localeCompare(b)));
    const hash = createHash("sha256")
      .update(JSON.stringify({ name: r.metadata.name, data: sorted }))
      .digest("hex")
      .slice(0, 10);
    renamed.set(r.metadata.name, `${r.metadata.name}-${hash}`);
    r.metadata.name = `${r.metadata.name}-${hash}`;
  }
  for (const r of resources) {
    const spec = podSpec(r);
    if (!spec) continue;
    for (const container of podContainers(r)) {
      for (const from of container.envFrom ?? []) {
        if (from.configMapRef) from.configMapRef.name = rename(renamed, from.configMapRef.name);
      }
      for (const env of container.env ?? []) {
        const ref = env.valueFrom?.configMapKeyRef;
        if (ref) ref.name = rename(renamed, ref.name);
      }
    }
    for (const volume of spec.volumes ?? []) {
      if (volume.configMap) volume.configMap.name = rename(renamed, volume.configMap.name);
    }
  }
  return resources;
}

const rename = (renamed: Map<string, string>, name: string) => renamed.get(name) ?? name;

interface JsonPatchOp {
  op: string;
  path: string;
  value?: unknown;
}

/** RFC 6902 add, replace, remove and test: what the overlays use. */
function applyJsonPatch(target: Resource, ops: JsonPatchOp[]): void {
  for (const { op, path, value } of ops) {
    const keys = path
      .split("/")
      .slice(1)
      .map((key) => key.replaceAll("~1", "/").replaceAll("~0", "~"));
    const last = keys.pop();
    let parent: unknown = target;
    for (const key of keys) {
      parent = (parent as Record<string, unknown> | undefined)?.[key];
      if (parent === undefined) throw new Error(`patch ${op} ${path}: ${key} does not exist`);
    }
    if (last === undefined || typeof parent !== "object" || parent === null) {
      throw new Error(`patch ${op} ${path}: no such location`);
    }
    const container = parent as Record<string, unknown>;
    const list = Array.isArray(parent) ? (parent as unknown[]) : undefined;
    const index = list ? (last === "-" ? list.length : Number(last)) : -1;
    if (list && (!Number.isInteger(index) || index < 0 || index > list.length)) {
      throw new Error(`patch ${op} ${path}: bad index`);
    }
    switch (op) {
      case "test":
        if (JSON.stringify(container[last]) !== JSON.stringify(value)) {
          throw new Error(`patch test ${path}: found ${JSON.stringify(container[last])}`);
        }
        break;
      case "add":
        if (list) list.splice(index, 0, structuredClone(value));
        else container[last] = structuredClone(value);
        break;
      case "replace":
        if (!(last in container)) throw new Error(`patch replace ${path}: nothing to replace`);
        container[last] = structuredClone(value);
        break;
      case "remove":
        if (!(last in container)) throw new Error(`patch remove ${path}: nothing to remove`);
        if (list) list.splice(index, 1);
        else delete container[last];
        break;
      default:
        throw new Error(`patch ${op} ${path}: unsupported operation`);
    }
  }
}

/** kustomize's `labels`: metadata always; pod templates and selectors when asked. */
function addLabels(r: Resource, pairs: Labels, selectors: boolean, templates = selectors): void {
  r.metadata.labels = { ...r.metadata.labels, ...pairs };
  const spec = r.spec as Record<string, unknown> | undefined;
  if (r.kind === "Deployment") {
    const deployment = r as DeploymentResource;
    if (templates) {
      const template = deployment.spec.template;
      template.metadata = {
        ...template.metadata,
        labels: { ...template.metadata?.labels, ...pairs },
      };
    }
    if (selectors) {
      const selector = deployment.spec.selector;
      selector.matchLabels = { ...selector.matchLabels, ...pairs };
      for (const constraint of deployment.spec.template.spec.topologySpreadConstraints ?? []) {
        const matchLabels = constraint.labelSelector?.matchLabels;
        if (matchLabels) Object.assign(matchLabels, pairs);
      }
    }
  } else if (selectors && r.kind === "Service" && spec) {
    spec.selector = { ...(spec.selector as Labels | undefined), ...pairs };
  } else if (selectors && r.kind === "PodDisruptionBudget") {
    const matchLabels = (r as PdbResource).spec.selector?.matchLabels;
    if (matchLabels) Object.assign(matchLabels, pairs);
  }
}

/** kustomize's `images`: `name[:tag][@digest]` whose name matches gets the new name/tag/digest. */
function retag(image: string, change: NonNullable<Kustomization["images"]>[number]): string {
  const at = image.indexOf("@");
  const withoutDigest = at === -1 ? image : image.slice(0, at);
  const colon = withoutDigest.lastIndexOf(":");
  const hasTag = colon > withoutDigest.lastIndexOf("/");
  const name = hasTag ? withoutDigest.slice(0, colon) : withoutDigest;
  if (name !== change.name) return image;
  const tag = hasTag ? withoutDigest.slice(colon + 1) : undefined;
  const newName = change.newName ?? name;
  if (change.digest) return `${newName}@${change.digest}`;
  const newTag = change.newTag ?? tag;
  return newTag ? `${newName}:${newTag}` : newName;
}

// ---- schemas: kubernetes-models, and their field lists ------------------------------------------

interface Model {
  validate: (data: Resource) => void;
  /** The module whose type declarations list the fields. */
  types: string;
}

function model<T extends { validate(): void }>(
  Class: new (data: never) => T,
  types: string,
): Model {
  return { validate: (data) => new Class(data as never).validate(), types };
}

const MODELS: Record<string, Model> = {
  "apps/v1 Deployment": model(Deployment, "kubernetes-models/apps/v1/Deployment"),
  "v1 Service": model(Service, "kubernetes-models/v1/Service"),
  "v1 ServiceAccount": model(ServiceAccount, "kubernetes-models/v1/ServiceAccount"),
  "v1 ConfigMap": model(ConfigMap, "kubernetes-models/v1/ConfigMap"),
  "v1 Secret": model(Secret, "kubernetes-models/v1/Secret"),
  "policy/v1 PodDisruptionBudget": model(
    PodDisruptionBudget,
    "kubernetes-models/policy/v1/PodDisruptionBudget",
  ),
  "keda.sh/v1alpha1 ScaledObject": model(
    ScaledObject,
    "@kubernetes-models/keda/keda.sh/v1alpha1/ScaledObject",
  ),
  "keda.sh/v1alpha1 TriggerAuthentication": model(
    TriggerAuthentication,
    "@kubernetes-models/keda/keda.sh/v1alpha1/TriggerAuthentication",
  ),
};

/** An interface from a declaration file: its fields and their types, and where its types live. */
interface Shape {
  file: string;
  fields: Map<string, string>;
  imports: Map<string, string>;
}

const shapes = new Map<string, Shape | null>();

/**
 * The JSON schemas of kubernetes-models accept unknown fields (as the Kubernetes OpenAPI does),
 * so a misspelt `livenesProbe` would validate and be dropped by the API server. The package's
 * type declarations list every field: read them to refuse what is not there.
 */
function shapeOf(file: string): Shape | null {
  const known = shapes.get(file);
  if (known !== undefined) return known;
  const text = readFileSync(file, "utf8").replace(/\/\*[\s\S]*?\*\//g, "");
  const imports = new Map<string, string>();
  for (const [, name, spec] of text.matchAll(/import \{ (\w+) \} from "([^"]+)";/g)) {
    imports.set(name!, declarationFile(spec!, file));
  }
  const head = /export interface \w+(?: extends [^{]+)? \{/.exec(text);
  let shape: Shape | null = null;
  if (head) {
    const fields = new Map<string, string>();
    let at = head.index + head[0].length;
    const field = /\s*"([^"]+)"\??:\s*/y;
    for (;;) {
      field.lastIndex = at;
      const match = field.exec(text);
      if (!match) break;
      let depth = 0;
      let end = field.lastIndex;
      for (; end < text.length; end++) {
        const char = text[end]!;
        if ("{<(".includes(char)) depth++;
        else if ("}>)".includes(char)) depth--;
        else if (char === ";" && depth === 0) break;
      }
      fields.set(match[1]!, text.slice(field.lastIndex, end).trim());
      at = end + 1;
    }
    if (fields.size === 0)
      throw new Error(`${file}: no fields found (declaration format changed?)`);
    shape = { file, fields, imports };
  }
  shapes.set(file, shape);
  return shape;
}

function declarationFile(spec: string, from: string): string {
  if (spec.startsWith(".")) return resolve(dirname(from), spec.replace(/\.js$/, ".d.ts"));
  const parts = spec.split("/");
  const packageLength = spec.startsWith("@") ? 2 : 1;
  const packageName = parts.slice(0, packageLength).join("/");
  const subpath = parts.slice(packageLength).join("/");
  // Node's lookup: the nearest node_modules holding the package.
  for (let dir = dirname(from); ; dir = dirname(dir)) {
    const candidate = join(dir, "node_modules", packageName);
    try {
      if (statSync(candidate).isDirectory()) return join(candidate, `${subpath}.d.ts`);
    } catch {}
    if (dirname(dir) === dir) throw new Error(`cannot find ${packageName} from ${from}`);
  }
}

function unknownFields(resource: Resource, types: string): string[] {
  const problems: string[] = [];
  const root = declarationFile(types, join(ROOT, "package.json"));
  walkFields(resource, shapeOf(root), `${resource.kind} ${resource.metadata.name}`, problems);
  return problems;
}

function walkFields(value: unknown, shape: Shape | null, path: string, problems: string[]): void {
  if (!shape || typeof value !== "object" || value === null || Array.isArray(value)) return;
  for (const [key, child] of Object.entries(value)) {
    const type = shape.fields.get(key);
    if (type === undefined) {
      problems.push(`${path}: unknown field "${key}"`);
      continue;
    }
    walkType(child, type, shape, `${path}.${key}`, problems);
  }
}

function walkType(
  value: unknown,
  type: string,
  owner: Shape,
  path: string,
  problems: string[],
): void {
  const array = /^Array<(.+)>$/s.exec(type);
  if (array) {
    if (Array.isArray(value)) {
      for (const [i, item] of value.entries()) {
        walkType(item, array[1]!, owner, `${path}[${i}]`, problems);
      }
    }
    return;
  }
  const map = /^\{\s*\[key: string\]: (.+);\s*\}$/s.exec(type);
  if (map) {
    if (typeof value === "object" && value !== null) {
      for (const [key, item] of Object.entries(value)) {
        walkType(item, map[1]!, owner, `${path}.${key}`, problems);
      }
    }
    return;
  }
  const file = owner.imports.get(type);
  if (file) walkFields(value, shapeOf(file), path, problems);
}

function schemaProblems(resources: Resource[]): string[] {
  const problems: string[] = [];
  for (const r of resources) {
    const id = `${r.kind} ${r.metadata?.name}`;
    const found = MODELS[`${r.apiVersion} ${r.kind}`];
    if (!found) {
      problems.push(`${id}: no schema for ${r.apiVersion} ${r.kind}`);
      continue;
    }
    try {
      found.validate(r);
    } catch (error) {
      problems.push(`${id}: ${(error as Error).message}`);
    }
    problems.push(...unknownFields(r, found.types));
  }
  return problems;
}

// ---- reading a render ----------------------------------------------------------------------------

function podSpec(r: Resource): PodSpec | undefined {
  return r.kind === "Deployment" ? (r as DeploymentResource).spec.template.spec : undefined;
}

function podContainers(r: Resource): Container[] {
  const spec = podSpec(r);
  return spec ? [...(spec.initContainers ?? []), ...spec.containers] : [];
}

const deployments = (rs: Resource[]) =>
  rs.filter((r) => r.kind === "Deployment") as DeploymentResource[];
const ofKind = <T extends Resource>(rs: Resource[], kind: string) =>
  rs.filter((r) => r.kind === kind) as T[];

/** The pgwake command a container runs: the image's entrypoint is `pgwake`, args[0] the command. */
const commandOf = (container: Container) => container.args?.[0] ?? "start";

/** The main container of a workload (the first; init containers aside). */
function mainContainer(d: DeploymentResource): Container {
  return d.spec.template.spec.containers[0]!;
}

function workload(rs: Resource[], command: string): DeploymentResource {
  const found = deployments(rs).filter((d) => commandOf(mainContainer(d)) === command);
  if (found.length !== 1) throw new Error(`expected one Deployment running pgwake ${command}`);
  return found[0]!;
}

const exampleSecret = () =>
  parse(readFileSync(join(DEPLOY, "secret.example.yaml"), "utf8")) as SecretResource;

/** A container's environment as the kubelet would build it: envFrom first, env overrides. */
function containerEnv(
  container: Container,
  rs: Resource[],
  secret: SecretResource,
): { env: Record<string, string>; problems: string[] } {
  const env: Record<string, string> = {};
  const problems: string[] = [];
  const configMap = (name: string) =>
    ofKind<ConfigMapResource>(rs, "ConfigMap").find((c) => c.metadata.name === name);
  const secretData = (name: string) =>
    name === secret.metadata.name ? (secret.stringData ?? {}) : undefined;
  for (const from of container.envFrom ?? []) {
    const name = from.configMapRef?.name ?? from.secretRef?.name ?? "";
    const data = from.configMapRef ? configMap(name)?.data : secretData(name);
    if (!data) problems.push(`${container.name}: envFrom names a missing ${name}`);
    Object.assign(env, data);
  }
  for (const variable of container.env ?? []) {
    const { secretKeyRef, configMapKeyRef } = variable.valueFrom ?? {};
    const ref = secretKeyRef ?? configMapKeyRef;
    if (!ref) {
      env[variable.name] = variable.value ?? "";
      continue;
    }
    const data = secretKeyRef ? secretData(ref.name) : configMap(ref.name)?.data;
    const value = data?.[ref.key];
    if (value !== undefined) env[variable.name] = value;
    else if (!ref.optional) {
      problems.push(`${container.name}: ${variable.name} names a missing ${ref.name}/${ref.key}`);
    }
  }
  return { env, problems };
}

/** The Secret key a container reads a variable from. */
function secretRefOf(container: Container, name: string): string | undefined {
  const ref = container.env?.find((e) => e.name === name)?.valueFrom?.secretKeyRef;
  return ref ? `${ref.name}/${ref.key}` : undefined;
}

/** Every setting (environment variable → default) each command accepts, from its --help. */
type SettingsByCommand = Map<string, Map<string, string>>;

async function readSettings(commands: string[]): Promise<SettingsByCommand> {
  const run = promisify(execFile);
  const settings: SettingsByCommand = new Map();
  for (const command of commands) {
    const { stdout } = await run(process.execPath, [BIN, command, "--help"], { cwd: ROOT });
    const found = new Map<string, string>();
    for (const [, name, value] of stdout.matchAll(/\[([A-Z][A-Z0-9_]*), default ([^\]]*)\]/g)) {
      found.set(name!, value!);
    }
    if (!found.has("DATABASE_URL"))
      throw new Error(`no settings found in pgwake ${command} --help`);
    settings.set(command, found);
  }
  return settings;
}

/** A setting's value in a container: its environment, else the command's default. */
function settingOf(
  env: Record<string, string>,
  settings: SettingsByCommand,
  command: string,
  name: string,
): string | undefined {
  return env[name] ?? settings.get(command)?.get(name);
}

const matches = (selector: Labels | undefined, labels: Labels | undefined) =>
  selector !== undefined &&
  Object.keys(selector).length > 0 &&
  Object.entries(selector).every(([key, value]) => labels?.[key] === value);

const templateLabels = (d: DeploymentResource) => d.spec.template.metadata?.labels;

// ---- checks: what a schema cannot see ----------------------------------------------------------

function referenceProblems(rs: Resource[], secret: SecretResource): string[] {
  const problems: string[] = [];
  const secretKeys = new Set(Object.keys(secret.stringData ?? {}));
  const namespaces = new Set(rs.map((r) => r.metadata.namespace));
  if (namespaces.size > 1) problems.push(`resources in several namespaces: ${[...namespaces]}`);
  for (const d of deployments(rs)) {
    const spec = d.spec.template.spec;
    for (const container of podContainers(d)) {
      problems.push(
        ...containerEnv(container, rs, secret).problems.map((p) => `${d.metadata.name}/${p}`),
      );
      for (const from of container.envFrom ?? []) {
        if (from.secretRef)
          problems.push(`${d.metadata.name}: envFrom a whole Secret hides what is read`);
      }
      for (const mount of container.volumeMounts ?? []) {
        if (!spec.volumes?.some((v) => v.name === mount.name)) {
          problems.push(
            `${d.metadata.name}/${container.name}: mounts a missing volume ${mount.name}`,
          );
        }
      }
    }
    const account = spec.serviceAccountName;
    if (account && !ofKind(rs, "ServiceAccount").some((a) => a.metadata.name === account)) {
      problems.push(`${d.metadata.name}: ServiceAccount ${account} is not in the render`);
    }
  }
  for (const auth of ofKind<TriggerAuthenticationResource>(rs, "TriggerAuthentication")) {
    for (const ref of auth.spec.secretTargetRef ?? []) {
      if (ref.name !== secret.metadata.name || !secretKeys.has(ref.key)) {
        problems.push(
          `TriggerAuthentication ${auth.metadata.name}: no Secret key ${ref.name}/${ref.key}`,
        );
      }
    }
  }
  for (const scaled of ofKind<ScaledObjectResource>(rs, "ScaledObject")) {
    const target = scaled.spec.scaleTargetRef;
    if (
      (target.kind ?? "Deployment") !== "Deployment" ||
      !deployments(rs).some((d) => d.metadata.name === target.name)
    ) {
      problems.push(`ScaledObject ${scaled.metadata.name}: no Deployment ${target.name} to scale`);
    }
    for (const trigger of scaled.spec.triggers) {
      const auth = trigger.authenticationRef?.name;
      if (auth && !ofKind(rs, "TriggerAuthentication").some((a) => a.metadata.name === auth)) {
        problems.push(`ScaledObject ${scaled.metadata.name}: no TriggerAuthentication ${auth}`);
      }
    }
  }
  return problems;
}

function labelProblems(rs: Resource[]): string[] {
  const problems: string[] = [];
  const all = deployments(rs);
  for (const d of all) {
    const selector = d.spec.selector.matchLabels;
    if (!matches(selector, templateLabels(d))) {
      problems.push(`Deployment ${d.metadata.name}: its selector does not match its own pods`);
    }
    for (const other of all) {
      if (other !== d && matches(selector, templateLabels(other))) {
        problems.push(
          `Deployment ${d.metadata.name}: its selector also matches ${other.metadata.name}'s pods`,
        );
      }
    }
    for (const constraint of d.spec.template.spec.topologySpreadConstraints ?? []) {
      if (!matches(constraint.labelSelector?.matchLabels, templateLabels(d))) {
        problems.push(`Deployment ${d.metadata.name}: a topology spread selector misses its pods`);
      }
    }
  }
  const selected = (selector: Labels | undefined) =>
    all.filter((d) => matches(selector, templateLabels(d)));
  for (const service of ofKind<ServiceResource>(rs, "Service")) {
    const targets = selected(service.spec.selector);
    if (targets.length !== 1) {
      problems.push(
        `Service ${service.metadata.name}: selects ${targets.length} Deployments, not 1`,
      );
      continue;
    }
    const ports = targets[0]!.spec.template.spec.containers.flatMap((c) => c.ports ?? []);
    for (const port of service.spec.ports) {
      const target = port.targetPort ?? port.port;
      if (!ports.some((p) => p.name === target || p.containerPort === target)) {
        problems.push(
          `Service ${service.metadata.name}: targetPort ${target} is no container port`,
        );
      }
    }
  }
  for (const pdb of ofKind<PdbResource>(rs, "PodDisruptionBudget")) {
    const targets = selected(pdb.spec.selector?.matchLabels);
    if (targets.length !== 1) {
      problems.push(
        `PodDisruptionBudget ${pdb.metadata.name}: selects ${targets.length} Deployments, not 1`,
      );
    }
  }
  for (const d of all) {
    if (
      !ofKind<PdbResource>(rs, "PodDisruptionBudget").some((p) =>
        matches(p.spec.selector?.matchLabels, templateLabels(d)),
      )
    ) {
      problems.push(`Deployment ${d.metadata.name}: no PodDisruptionBudget covers it`);
    }
  }
  return problems;
}

function settingProblems(rs: Resource[], secret: SecretResource, settings: SettingsByCommand) {
  const problems: string[] = [];
  const images = new Set<string | undefined>();
  const schemas = new Set<string | undefined>();
  for (const d of deployments(rs)) {
    for (const container of podContainers(d)) {
      const where = `${d.metadata.name}/${container.name}`;
      images.add(container.image);
      if (container.command) problems.push(`${where}: overrides the image's pgwake entrypoint`);
      const command = commandOf(container);
      const accepted = settings.get(command);
      if (!accepted || (container.args?.length ?? 0) !== 1) {
        problems.push(
          `${where}: args ${JSON.stringify(container.args)} are not one pgwake command`,
        );
        continue;
      }
      const { env } = containerEnv(container, rs, secret);
      for (const name of Object.keys(env)) {
        if (!accepted.has(name))
          problems.push(`${where}: ${name} is not a setting of pgwake ${command}`);
      }
      try {
        loadConfig(env);
      } catch (error) {
        problems.push(`${where}: ${(error as Error).message}`);
      }
      schemas.add(settingOf(env, settings, command, "PGWAKE_SCHEMA"));
    }
  }
  if (images.size !== 1) problems.push(`containers run different images: ${[...images]}`);
  if (schemas.size !== 1) problems.push(`containers use different schemas: ${[...schemas]}`);
  return problems;
}

/** The container port a probe or a setting names (by name or number). */
function portNumber(container: Container, port: number | string | undefined): number | undefined {
  if (typeof port === "number") return port;
  return container.ports?.find((p) => p.name === port)?.containerPort;
}

function probeProblems(rs: Resource[], secret: SecretResource, settings: SettingsByCommand) {
  const problems: string[] = [];
  const portSetting: Record<string, string> = { api: "PORT", worker: "PGWAKE_HEALTH_PORT" };
  for (const d of deployments(rs)) {
    const container = mainContainer(d);
    const command = commandOf(container);
    const where = `${d.metadata.name}/${container.name}`;
    const setting = portSetting[command];
    if (!setting) {
      problems.push(`${where}: pgwake ${command} serves no probes`);
      continue;
    }
    const { env } = containerEnv(container, rs, secret);
    const port = Number(settingOf(env, settings, command, setting));
    if (!container.ports?.some((p) => p.containerPort === port)) {
      problems.push(`${where}: ${setting} is ${port}, which is no container port`);
    }
    if (
      command === "api" &&
      !["0.0.0.0", "::"].includes(settingOf(env, settings, command, "HOST") ?? "")
    ) {
      problems.push(`${where}: HOST must be 0.0.0.0 or :: for the kubelet to reach the pod`);
    }
    const expected: [keyof Container, string][] = [
      ["startupProbe", LIVENESS_PATH],
      ["livenessProbe", LIVENESS_PATH],
      ["readinessProbe", READINESS_PATH],
    ];
    for (const [kind, path] of expected) {
      const probe = (container[kind] as Probe | undefined)?.httpGet;
      if (!probe) problems.push(`${where}: no ${kind}`);
      else if (probe.path !== path || portNumber(container, probe.port) !== port) {
        problems.push(
          `${where}: ${kind} asks ${probe.path} on ${probe.port}, expected ${path} on ${port}`,
        );
      }
    }
  }
  return problems;
}

/** Seconds a preStop hook takes before SIGTERM (a sleep action, or `sleep n` in exec). */
function preStopSeconds(container: Container): number {
  const preStop = container.lifecycle?.preStop;
  if (preStop?.sleep) return preStop.sleep.seconds;
  const [program, seconds] = preStop?.exec?.command ?? [];
  if (program === "sleep" || program === "/bin/sleep") return Number(seconds);
  return 0;
}

function shutdownProblems(rs: Resource[], secret: SecretResource, settings: SettingsByCommand) {
  const problems: string[] = [];
  const behindService = (d: DeploymentResource) =>
    ofKind<ServiceResource>(rs, "Service").some((s) => matches(s.spec.selector, templateLabels(d)));
  for (const d of deployments(rs)) {
    const container = mainContainer(d);
    const command = commandOf(container);
    const { env } = containerEnv(container, rs, secret);
    const graceMs = Number(settingOf(env, settings, command, "PGWAKE_SHUTDOWN_GRACE_MS"));
    const preStop = preStopSeconds(container);
    const needed = preStop + Math.ceil(graceMs / 1_000) + SHUTDOWN_MARGIN_SECONDS;
    // Kubernetes' default when the field is absent.
    const given = d.spec.template.spec.terminationGracePeriodSeconds ?? 30;
    if (!(given >= needed)) {
      problems.push(
        `${d.metadata.name}: terminationGracePeriodSeconds ${given} < preStop ${preStop} s + grace ${graceMs} ms + margin ${SHUTDOWN_MARGIN_SECONDS} s`,
      );
    }
    if (behindService(d) && !(preStop > 0)) {
      problems.push(
        `${d.metadata.name}: behind a Service without a preStop delay (requests lost at stop)`,
      );
    }
  }
  return problems;
}

function securityProblems(rs: Resource[]): string[] {
  const problems: string[] = [];
  for (const d of deployments(rs)) {
    const spec = d.spec.template.spec;
    const pod = spec.securityContext;
    const name = d.metadata.name;
    if (spec.automountServiceAccountToken !== false) problems.push(`${name}: mounts an API token`);
    if (spec.enableServiceLinks !== false) {
      problems.push(`${name}: service links put *_PORT/*_SERVICE_* variables beside the settings`);
    }
    if (pod?.seccompProfile?.type !== "RuntimeDefault")
      problems.push(`${name}: no RuntimeDefault seccomp`);
    for (const container of podContainers(d)) {
      const where = `${name}/${container.name}`;
      const context = container.securityContext;
      if (!(context?.runAsNonRoot ?? pod?.runAsNonRoot)) problems.push(`${where}: may run as root`);
      // The image's user is a name; the kubelet can only verify runAsNonRoot with a number.
      if (!((context?.runAsUser ?? pod?.runAsUser ?? 0) > 0))
        problems.push(`${where}: no numeric non-root runAsUser`);
      if (context?.allowPrivilegeEscalation !== false)
        problems.push(`${where}: privilege escalation allowed`);
      if (context?.readOnlyRootFilesystem !== true)
        problems.push(`${where}: root filesystem writable`);
      if (!context?.capabilities?.drop?.includes("ALL"))
        problems.push(`${where}: capabilities not dropped`);
      const { requests, limits } = container.resources ?? {};
      if (!requests?.cpu || !requests.memory || !limits?.memory) {
        problems.push(`${where}: needs cpu and memory requests and a memory limit`);
      }
      for (const mount of container.volumeMounts ?? []) {
        const volume = spec.volumes?.find((v) => v.name === mount.name);
        if (volume && !volume.emptyDir && !mount.readOnly) {
          problems.push(`${where}: ${mount.mountPath} is a writable mount that outlives the pod`);
        }
      }
    }
  }
  return problems;
}

/** Queue names in the query's ARRAY['a', 'b'] literals. */
function queryQueues(query: string): string[][] {
  return [...query.matchAll(/ARRAY\s*\[([^\]]*)\]/gi)].map(([, items]) =>
    [...items!.matchAll(/'((?:[^']|'')*)'/g)].map(([, q]) => q!.replaceAll("''", "'")),
  );
}

/** Schemas the query names: `schema.function(` and `FROM/JOIN schema.table`. */
function querySchemas(query: string): string[] {
  const qualified = /(?:\b(?:FROM|JOIN)\s+([a-z_]\w*)\.\w+)|(?:\b([a-z_]\w*)\.\w+\s*\()/gi;
  return [...query.matchAll(qualified)].map(([, table, fn]) => (table ?? fn)!);
}

function kedaProblems(rs: Resource[], secret: SecretResource, settings: SettingsByCommand) {
  const problems: string[] = [];
  for (const scaled of ofKind<ScaledObjectResource>(rs, "ScaledObject")) {
    const name = `ScaledObject ${scaled.metadata.name}`;
    const target = deployments(rs).find((d) => d.metadata.name === scaled.spec.scaleTargetRef.name);
    if (!target || commandOf(mainContainer(target)) !== "worker") {
      problems.push(`${name}: does not scale a pgwake worker Deployment`);
      continue;
    }
    if (target.spec.replicas !== undefined) {
      problems.push(`${name}: ${target.metadata.name} sets replicas, reset on every apply`);
    }
    const { spec } = scaled;
    if (spec.minReplicaCount !== 0) problems.push(`${name}: does not scale to zero`);
    if (spec.cooldownPeriod === undefined) problems.push(`${name}: no explicit cooldownPeriod`);
    if (spec.maxReplicaCount === undefined)
      problems.push(`${name}: no maxReplicaCount (connection budget)`);
    const worker = mainContainer(target);
    const { env } = containerEnv(worker, rs, secret);
    const setting = (key: string) => settingOf(env, settings, "worker", key) ?? "";
    const schema = setting("PGWAKE_SCHEMA");
    const queues = setting("PGWAKE_QUEUES")
      .split(",")
      .map((q) => q.trim())
      .sort();
    const concurrency = Number(setting("PGWAKE_CONCURRENCY"));
    const triggers = spec.triggers.filter((t) => t.type === "postgresql");
    if (triggers.length !== 1) problems.push(`${name}: expected one postgresql trigger`);
    for (const trigger of triggers) {
      const query = trigger.metadata.query ?? "";
      if (!query.includes(`${schema}.queue_depth(`)) {
        problems.push(`${name}: the query does not call ${schema}.queue_depth`);
      }
      for (const used of querySchemas(query)) {
        if (used !== schema)
          problems.push(`${name}: the query reads schema ${used}, workers use ${schema}`);
      }
      const lists = queryQueues(query);
      if (lists.length === 0) problems.push(`${name}: the query names no queues`);
      for (const list of lists) {
        if (JSON.stringify([...list].sort()) !== JSON.stringify(queues)) {
          problems.push(`${name}: the query counts queues ${list}, workers serve ${queues}`);
        }
      }
      const targetValue = Number(trigger.metadata.targetQueryValue);
      if (!(targetValue > 0 && targetValue <= concurrency)) {
        problems.push(
          `${name}: targetQueryValue ${trigger.metadata.targetQueryValue} must be from 1 to PGWAKE_CONCURRENCY (${concurrency}), or workers are given more jobs than they run`,
        );
      }
      const auth = ofKind<TriggerAuthenticationResource>(rs, "TriggerAuthentication").find(
        (a) => a.metadata.name === trigger.authenticationRef?.name,
      );
      const connection = auth?.spec.secretTargetRef?.find((r) => r.parameter === "connection");
      const direct =
        secretRefOf(worker, "PGWAKE_LISTEN_URL") ?? secretRefOf(worker, "DATABASE_URL");
      if (!connection || `${connection.name}/${connection.key}` !== direct) {
        problems.push(`${name}: KEDA must connect with the workers' direct URL (${direct})`);
      }
    }
  }
  return problems;
}

/**
 * Behind a transaction pooler, what needs a session goes to Postgres directly: the workers'
 * LISTEN (PGWAKE_LISTEN_URL) and the migrations (a session-level advisory lock).
 */
function poolerProblems(rs: Resource[]): string[] {
  const problems: string[] = [];
  const worker = deployments(rs).find((d) => commandOf(mainContainer(d)) === "worker");
  if (!worker) return ["no worker Deployment"];
  const main = mainContainer(worker);
  const direct = secretRefOf(main, "PGWAKE_LISTEN_URL") ?? secretRefOf(main, "DATABASE_URL");
  for (const d of deployments(rs)) {
    for (const container of podContainers(d)) {
      if (commandOf(container) !== "migrate") continue;
      const used = secretRefOf(container, "DATABASE_URL");
      if (used !== direct) {
        problems.push(
          `${d.metadata.name}/${container.name}: migrates through ${used}, not the direct ${direct}`,
        );
      }
    }
  }
  return problems;
}

/** Every pgwake pod migrates first: no container runs against a schema older than its code. */
function migrationProblems(rs: Resource[]): string[] {
  const problems: string[] = [];
  for (const d of deployments(rs)) {
    const init = d.spec.template.spec.initContainers ?? [];
    const migrate = init.find((c) => commandOf(c) === "migrate");
    if (!migrate) problems.push(`${d.metadata.name}: no migrate init container`);
    else if (migrate.image !== mainContainer(d).image) {
      problems.push(`${d.metadata.name}: migrates with another image than it runs`);
    }
  }
  return problems;
}

// ---- the tests -------------------------------------------------------------------------------------

let settings: SettingsByCommand;
beforeAll(async () => {
  settings = await readSettings(["api", "worker", "migrate"]);
});

describe.each(KUSTOMIZATIONS)("deploy/kubernetes/%s", (dir) => {
  const rendered = render(dir);
  const secret = exampleSecret();

  it("renders the API, the workers, their Service, PDBs and settings", () => {
    const kinds = rendered.map((r) => `${r.kind} ${r.metadata.name.replace(/-[0-9a-f]{10}$/, "")}`);
    expect(kinds).toEqual(
      expect.arrayContaining([
        "Deployment pgwake-api",
        "Deployment pgwake-worker",
        "Service pgwake-api",
        "PodDisruptionBudget pgwake-api",
        "PodDisruptionBudget pgwake-worker",
        "ConfigMap pgwake",
        "ServiceAccount pgwake",
      ]),
    );
    // The Secret is the user's: no render may overwrite it.
    expect(rendered.some((r) => r.kind === "Secret")).toBe(false);
  });

  it("validates against the Kubernetes and KEDA schemas, unknown fields refused", () => {
    expect(schemaProblems(rendered)).toEqual([]);
  });

  it("references only what exists: ConfigMaps, Secret keys, accounts, scale targets", () => {
    expect(referenceProblems(rendered, secret)).toEqual([]);
  });

  it("selects the right pods: Deployments, the Service, PDBs, spread constraints", () => {
    expect(labelProblems(rendered)).toEqual([]);
  });

  it("gives each container only settings of its pgwake command, with valid values", () => {
    expect(settingProblems(rendered, secret, settings)).toEqual([]);
  });

  it("probes /health and /ready on the port the process listens on", () => {
    expect(probeProblems(rendered, secret, settings)).toEqual([]);
  });

  it("waits long enough at stop: preStop + shutdown grace + margin", () => {
    expect(shutdownProblems(rendered, secret, settings)).toEqual([]);
  });

  it("runs non-root, read-only, without capabilities, with resources", () => {
    expect(securityProblems(rendered)).toEqual([]);
  });

  it("migrates in every pod before pgwake starts, directly when behind a pooler", () => {
    expect(migrationProblems(rendered)).toEqual([]);
    expect(poolerProblems(rendered)).toEqual([]);
  });

  it("scales workers with KEDA on their own queues' depth, when it has KEDA", () => {
    const scaled = ofKind(rendered, "ScaledObject");
    expect(scaled).toHaveLength(dir === "base" ? 0 : 1);
    expect(kedaProblems(rendered, secret, settings)).toEqual([]);
  });
});

describe("deploy/kubernetes/overlays", () => {
  it("point the image at a registry and put everything in one namespace", () => {
    for (const dir of ["overlays/example", "overlays/pgbouncer"]) {
      const rendered = render(dir);
      for (const container of rendered.flatMap(podContainers)) {
        expect(container.image).toBe("registry.example.com/pgwake:0.1.0");
      }
      expect(new Set(rendered.map((r) => r.metadata.namespace))).toEqual(new Set(["pgwake"]));
    }
    for (const container of render("base").flatMap(podContainers)) {
      expect(container.image).toBe("pgwake:latest");
    }
  });

  it("example: a second queue, in the settings and in the KEDA query alike", () => {
    const rendered = render("overlays/example");
    const worker = mainContainer(workload(rendered, "worker"));
    expect(containerEnv(worker, rendered, exampleSecret()).env.PGWAKE_QUEUES).toBe(
      "default,emails",
    );
    const [scaled] = ofKind<ScaledObjectResource>(rendered, "ScaledObject");
    expect(queryQueues(scaled!.spec.triggers[0]!.metadata.query!)).toEqual([["default", "emails"]]);
    // Its selectors carry the instance label: pods of another installation are not selected.
    const api = workload(rendered, "api");
    expect(api.spec.selector.matchLabels).toMatchObject({
      "app.kubernetes.io/instance": "example",
    });
  });

  it("pgbouncer: LISTEN, migrations and KEDA go to Postgres directly", () => {
    const rendered = render("overlays/pgbouncer");
    const worker = mainContainer(workload(rendered, "worker"));
    expect(secretRefOf(worker, "DATABASE_URL")).toBe("pgwake/DATABASE_URL");
    expect(secretRefOf(worker, "PGWAKE_LISTEN_URL")).toBe("pgwake/DATABASE_DIRECT_URL");
    const api = workload(rendered, "api");
    expect(secretRefOf(mainContainer(api), "DATABASE_URL")).toBe("pgwake/DATABASE_URL");
    expect(secretRefOf(api.spec.template.spec.initContainers![0]!, "DATABASE_URL")).toBe(
      "pgwake/DATABASE_DIRECT_URL",
    );
  });

  it("the example Secret is an example: placeholder values only", () => {
    const secret = exampleSecret();
    expect(schemaProblems([secret])).toEqual([]);
    for (const value of Object.values(secret.stringData ?? {}))
      expect(value).toContain("CHANGE-ME");
  });
});

describe("each check catches the mistake it is for", () => {
  const secret = exampleSecret();
  /**
   * The problems a change brings: the check on a changed render of an overlay, less those it
   * reports on the unchanged one.
   */
  const introduced = (
    check: (rs: Resource[]) => string[],
    edit: (rs: Resource[]) => void,
    dir = "overlays/example",
  ) => {
    const before = new Set(check(render(dir)));
    const changed = render(dir);
    edit(changed);
    return check(changed).filter((problem) => !before.has(problem));
  };
  const api = (rs: Resource[]) => workload(rs, "api");
  const worker = (rs: Resource[]) => workload(rs, "worker");
  const configMap = (rs: Resource[], prefix: string) =>
    ofKind<ConfigMapResource>(rs, "ConfigMap").find((c) =>
      new RegExp(`^${prefix}-[0-9a-f]{10}$`).test(c.metadata.name),
    )!;
  const scaled = (rs: Resource[]) => ofKind<ScaledObjectResource>(rs, "ScaledObject")[0]!;
  const withSettings =
    (check: (rs: Resource[], secret: SecretResource, settings: SettingsByCommand) => string[]) =>
    (rs: Resource[]) =>
      check(rs, secret, settings);

  it("schemas: a wrong type, a misspelt field, an unknown kind", () => {
    const wrongType = introduced(schemaProblems, (rs) => {
      (mainContainer(api(rs)).ports![0] as { containerPort: unknown }).containerPort = "3000";
    });
    expect(wrongType).toEqual([expect.stringMatching(/containerPort must be integer/)]);
    const typo = introduced(schemaProblems, (rs) => {
      const container = mainContainer(worker(rs)) as Container & Record<string, unknown>;
      container.livenesProbe = container.livenessProbe;
      (scaled(rs).spec as Record<string, unknown>).minReplicas = 1;
    });
    expect(typo).toEqual([
      'Deployment pgwake-worker.spec.template.spec.containers[0]: unknown field "livenesProbe"',
      'ScaledObject pgwake-worker.spec: unknown field "minReplicas"',
    ]);
    const unknownKind = introduced(schemaProblems, (rs) => {
      rs.push({ apiVersion: "v1", kind: "Pod", metadata: { name: "x" } });
    });
    expect(unknownKind).toEqual(["Pod x: no schema for v1 Pod"]);
  });

  it("references: a missing Secret key, ConfigMap, account or scale target", () => {
    const problems = introduced(
      (rs) => referenceProblems(rs, secret),
      (rs) => {
        mainContainer(api(rs)).env![0]!.valueFrom!.secretKeyRef!.key = "DATABASE_URI";
        mainContainer(worker(rs)).envFrom![0]!.configMapRef!.name = "pgwake-settings";
        worker(rs).spec.template.spec.serviceAccountName = "pgwake-worker";
        scaled(rs).spec.scaleTargetRef.name = "pgwake-workers";
      },
    );
    expect(problems).toEqual([
      "pgwake-api/api: DATABASE_URL names a missing pgwake/DATABASE_URI",
      "pgwake-worker/worker: envFrom names a missing pgwake-settings",
      "pgwake-worker: ServiceAccount pgwake-worker is not in the render",
      "ScaledObject pgwake-worker: no Deployment pgwake-workers to scale",
    ]);
  });

  it("labels: a Service, a PDB or a spread constraint that misses its pods", () => {
    const problems = introduced(labelProblems, (rs) => {
      ofKind<ServiceResource>(rs, "Service")[0]!.spec.selector!["app.kubernetes.io/component"] =
        "apí";
      const [, workerPdb] = ofKind<PdbResource>(rs, "PodDisruptionBudget");
      workerPdb!.spec.selector!.matchLabels = { "app.kubernetes.io/name": "pgwake" };
      const spread = worker(rs).spec.template.spec.topologySpreadConstraints![0]!;
      spread.labelSelector!.matchLabels!["app.kubernetes.io/component"] = "api";
    });
    expect(problems).toEqual([
      "Deployment pgwake-worker: a topology spread selector misses its pods",
      "Service pgwake-api: selects 0 Deployments, not 1",
      "PodDisruptionBudget pgwake-worker: selects 2 Deployments, not 1",
    ]);
  });

  it("settings: one the command does not read, a bad value, another schema", () => {
    const problems = introduced(withSettings(settingProblems), (rs) => {
      configMap(rs, "pgwake-api").data!.PGWAKE_QUEUES = "default";
      configMap(rs, "pgwake-worker").data!.PGWAKE_CONCURRENCY = "lots";
      mainContainer(worker(rs)).env!.push({ name: "PGWAKE_SCHEMA", value: "jobs" });
    });
    expect(problems).toEqual([
      "pgwake-api/api: PGWAKE_QUEUES is not a setting of pgwake api",
      expect.stringMatching(/^pgwake-worker\/worker: [\s\S]*PGWAKE_CONCURRENCY: must be a number/),
      "containers use different schemas: pgwake,jobs",
    ]);
  });

  it("probes: another path, a port the process does not listen on, a local-only HOST", () => {
    const problems = introduced(withSettings(probeProblems), (rs) => {
      mainContainer(api(rs)).readinessProbe!.httpGet!.path = "/readyz";
      configMap(rs, "pgwake-api").data!.HOST = "127.0.0.1";
      configMap(rs, "pgwake-worker").data!.PGWAKE_HEALTH_PORT = "9464";
    });
    expect(problems).toEqual([
      "pgwake-api/api: HOST must be 0.0.0.0 or :: for the kubelet to reach the pod",
      "pgwake-api/api: readinessProbe asks /readyz on http, expected /ready on 3000",
      "pgwake-worker/worker: PGWAKE_HEALTH_PORT is 9464, which is no container port",
      "pgwake-worker/worker: startupProbe asks /health on health, expected /health on 9464",
      "pgwake-worker/worker: livenessProbe asks /health on health, expected /health on 9464",
      "pgwake-worker/worker: readinessProbe asks /ready on health, expected /ready on 9464",
    ]);
  });

  it("shutdown: a grace raised without the pod's, an API without a preStop delay", () => {
    const problems = introduced(withSettings(shutdownProblems), (rs) => {
      configMap(rs, "pgwake-worker").data!.PGWAKE_SHUTDOWN_GRACE_MS = "60000";
      delete mainContainer(api(rs)).lifecycle;
    });
    expect(problems).toEqual([
      "pgwake-api: behind a Service without a preStop delay (requests lost at stop)",
      "pgwake-worker: terminationGracePeriodSeconds 30 < preStop 0 s + grace 60000 ms + margin 5 s",
    ]);
  });

  it("security: a writable root filesystem, service links, a root user", () => {
    const problems = introduced(securityProblems, (rs) => {
      mainContainer(api(rs)).securityContext!.readOnlyRootFilesystem = false;
      delete worker(rs).spec.template.spec.enableServiceLinks;
      delete worker(rs).spec.template.spec.securityContext!.runAsUser;
    });
    expect(problems).toEqual([
      "pgwake-api/api: root filesystem writable",
      "pgwake-worker: service links put *_PORT/*_SERVICE_* variables beside the settings",
      "pgwake-worker/migrate: no numeric non-root runAsUser",
      "pgwake-worker/worker: no numeric non-root runAsUser",
    ]);
  });

  it("KEDA: queues, schema, target and replicas that do not match the workers", () => {
    const problems = introduced(withSettings(kedaProblems), (rs) => {
      const trigger = scaled(rs).spec.triggers[0]!;
      trigger.metadata.query = `${trigger.metadata.query!.replace("'emails'", "'mail'")} + (SELECT count(*) FROM public.jobs)`;
      trigger.metadata.targetQueryValue = "64";
      worker(rs).spec.replicas = 2;
    });
    expect(problems).toEqual([
      "ScaledObject pgwake-worker: pgwake-worker sets replicas, reset on every apply",
      "ScaledObject pgwake-worker: the query reads schema public, workers use pgwake",
      "ScaledObject pgwake-worker: the query counts queues default,mail, workers serve default,emails",
      expect.stringMatching(/targetQueryValue 64 must be from 1 to PGWAKE_CONCURRENCY \(16\)/),
    ]);
    const noDepth = introduced(withSettings(kedaProblems), (rs) => {
      scaled(rs).spec.triggers[0]!.metadata.query = "SELECT count(*) FROM pgwake.jobs";
    });
    expect(noDepth).toEqual([
      "ScaledObject pgwake-worker: the query does not call pgwake.queue_depth",
      "ScaledObject pgwake-worker: the query names no queues",
    ]);
  });

  it("pooler: KEDA or a migration through the pooler", () => {
    const edit = (rs: Resource[]) => {
      const [auth] = ofKind<TriggerAuthenticationResource>(rs, "TriggerAuthentication");
      auth!.spec.secretTargetRef![0]!.key = "DATABASE_URL";
      const migrate = worker(rs).spec.template.spec.initContainers![0]!;
      migrate.env![0]!.valueFrom!.secretKeyRef!.key = "DATABASE_URL";
    };
    expect(introduced(withSettings(kedaProblems), edit, "overlays/pgbouncer")).toEqual([
      "ScaledObject pgwake-worker: KEDA must connect with the workers' direct URL (pgwake/DATABASE_DIRECT_URL)",
    ]);
    expect(introduced(poolerProblems, edit, "overlays/pgbouncer")).toEqual([
      "pgwake-worker/migrate: migrates through pgwake/DATABASE_URL, not the direct pgwake/DATABASE_DIRECT_URL",
    ]);
  });

  it("migrations: a pod without the migrate init container", () => {
    const problems = introduced(migrationProblems, (rs) => {
      worker(rs).spec.template.spec.initContainers = [];
    });
    expect(problems).toEqual(["pgwake-worker: no migrate init container"]);
  });

  it("rendering: an unsupported kustomize field, a patch that does not apply, image names", () => {
    expect(() => checkKustomization({ commonLabels: {} }, "k.yaml", "Kustomization")).toThrow(
      "k.yaml: unsupported field commonLabels",
    );
    const resource = (): Resource => ({
      apiVersion: "v1",
      kind: "ConfigMap",
      metadata: { name: "x" },
      data: { a: "1" },
    });
    expect(() => applyJsonPatch(resource(), [{ op: "test", path: "/data/a", value: "2" }])).toThrow(
      'patch test /data/a: found "1"',
    );
    expect(() =>
      applyJsonPatch(resource(), [{ op: "replace", path: "/data/b", value: "2" }]),
    ).toThrow("nothing to replace");
    expect(retag("pgwake:latest", { name: "pgwake", newName: "r.io:5000/pgwake" })).toBe(
      "r.io:5000/pgwake:latest",
    );
    expect(retag("r.io:5000/other:1", { name: "pgwake", newTag: "2" })).toBe("r.io:5000/other:1");
  });
});

// ---- the containers, run as the manifests say ----------------------------------------------------

interface Run {
  child: ChildProcess;
  output: () => string;
  exit: Promise<number | null>;
}

const running = new Set<ChildProcess>();

/**
 * Starts a container's command like the image does: the Dockerfile's ENTRYPOINT plus the
 * container's args, in the image's working directory (the repository root holds the same
 * bin/, db/, src/ and node_modules). A read-only root filesystem is imitated with Node's
 * permission model: any write outside the container's emptyDir mounts throws.
 */
function runContainer(container: Container, spec: PodSpec, env: Record<string, string>): Run {
  const dockerfile = readFileSync(join(ROOT, "Dockerfile"), "utf8");
  const entrypoint = JSON.parse(/^ENTRYPOINT (\[.*\])$/m.exec(dockerfile)![1]!) as string[];
  expect(entrypoint[0]).toBe("node");
  const permissions: string[] = [];
  if (container.securityContext?.readOnlyRootFilesystem) {
    permissions.push("--permission", "--allow-fs-read=*");
    // Newer Node versions also gate the network behind the permission model.
    if (process.allowedNodeEnvironmentFlags.has("--allow-net")) permissions.push("--allow-net");
    for (const mount of container.volumeMounts ?? []) {
      if (spec.volumes?.find((v) => v.name === mount.name)?.emptyDir) {
        permissions.push(`--allow-fs-write=${mount.mountPath}/*`);
      }
    }
  }
  const base: Record<string, string> = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (value !== undefined && !key.startsWith("PGWAKE_") && key !== "DATABASE_URL") {
      base[key] = value;
    }
  }
  const child = spawn(
    process.execPath,
    [...permissions, ...entrypoint.slice(1), ...(container.args ?? [])],
    { cwd: ROOT, env: { ...base, ...env }, stdio: ["ignore", "pipe", "pipe"] },
  );
  let output = "";
  child.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
    output += chunk;
  });
  child.stderr!.setEncoding("utf8").on("data", (chunk: string) => {
    output += chunk;
  });
  running.add(child);
  const exit = new Promise<number | null>((done) =>
    child.on("close", (code) => {
      running.delete(child);
      done(code);
    }),
  );
  return { child, output: () => output, exit };
}

/** Waits for an exit, at most `seconds` (then SIGKILL, as the kubelet does). */
async function exitWithin(run: Run, seconds: number): Promise<number | null> {
  const timer = setTimeout(() => run.child.kill("SIGKILL"), seconds * 1_000);
  const code = await run.exit;
  clearTimeout(timer);
  return code;
}

describe("the containers, run as deploy/kubernetes/base says", () => {
  const rendered = render("base");
  const secret = exampleSecret();
  const apiPod = workload(rendered, "api");
  const workerPod = workload(rendered, "worker");
  const schema = `t_k8s_${randomBytes(3).toString("hex")}`;
  const apiKey = randomBytes(16).toString("hex");
  let apiPort: number;
  let healthPort: number;
  let migrations: { code: number | null; output: string }[];
  let api: Run;
  let worker: Run;
  let admin: pg.Pool;

  /** A container's environment from the manifests, pointed at the test database and ports. */
  const envOf = (container: Container) => {
    const { env } = containerEnv(container, rendered, secret);
    return {
      ...env,
      DATABASE_URL: databaseUrl(),
      PGWAKE_SCHEMA: schema,
      ...(env.PORT ? { PORT: String(apiPort) } : {}),
      ...(env.PGWAKE_HEALTH_PORT ? { PGWAKE_HEALTH_PORT: String(healthPort) } : {}),
      ...(env.PGWAKE_API_KEYS ? { PGWAKE_API_KEYS: apiKey } : {}),
    };
  };
  const start = (pod: DeploymentResource, container: Container) =>
    runContainer(container, pod.spec.template.spec, envOf(container));
  const status = async (port: number, path: string | undefined, key?: string) => {
    const headers: Record<string, string> = key ? { authorization: `Bearer ${key}` } : {};
    return (await fetch(`http://127.0.0.1:${port}${path}`, { headers })).status;
  };
  /** Waits for a probe to pass, as the kubelet's startup probe does. */
  const started = async (run: Run, port: number, probe: Probe | undefined) => {
    try {
      await waitFor(() => status(port, probe?.httpGet?.path).then((code) => code === 200), {
        timeoutMs: 30_000,
        message: `${probe?.httpGet?.path} on ${port} to answer 200`,
      });
    } catch (error) {
      throw new Error(`${(error as Error).message}\n${run.output()}`);
    }
  };

  beforeAll(async () => {
    apiPort = await freePort();
    healthPort = await freePort();
    admin = new pg.Pool({ connectionString: databaseUrl(), max: 2 });
    // Both pods' init containers at once, as when the Deployments are first applied.
    const inits = [apiPod, workerPod].map((pod) =>
      start(pod, pod.spec.template.spec.initContainers![0]!),
    );
    const codes = await Promise.all(inits.map((run) => exitWithin(run, 60)));
    migrations = inits.map((run, i) => ({ code: codes[i]!, output: run.output() }));
    api = start(apiPod, mainContainer(apiPod));
    worker = start(workerPod, mainContainer(workerPod));
  });
  afterAll(async () => {
    for (const child of running) child.kill("SIGKILL");
    if (!process.env.PGWAKE_KEEP_SCHEMAS) {
      await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    }
    await admin.end();
  });

  it("migrates from both pods' init containers at once, read-only", async () => {
    expect(
      migrations.map((m) => m.code),
      migrations.map((m) => m.output).join("\n"),
    ).toEqual([0, 0]);
    const { rows } = await admin.query(
      `SELECT max(version) AS version FROM "${schema}".migrations`,
    );
    expect(Number(rows[0].version)).toBeGreaterThan(0);
  });

  it("answers the API's probes without an API key", async () => {
    const container = mainContainer(apiPod);
    await started(api, apiPort, container.startupProbe);
    expect(await status(apiPort, container.livenessProbe?.httpGet?.path)).toBe(200);
    expect(await status(apiPort, container.readinessProbe?.httpGet?.path)).toBe(200);
    // The key from the Secret is required everywhere else.
    expect(await status(apiPort, "/jobs/1")).toBe(401);
  });

  it("runs a job submitted through the API on a worker, both read-only", async () => {
    await started(api, apiPort, mainContainer(apiPod).startupProbe);
    const headers = { authorization: `Bearer ${apiKey}`, "content-type": "application/json" };
    const submitted = await fetch(`http://127.0.0.1:${apiPort}/jobs`, {
      method: "POST",
      headers,
      body: JSON.stringify({ task: "demo.echo", payload: { from: "kubernetes" } }),
    });
    expect(submitted.status).toBe(201);
    const { job } = (await submitted.json()) as { job: { id: number } };
    const read = async () =>
      (await (await fetch(`http://127.0.0.1:${apiPort}/jobs/${job.id}`, { headers })).json()) as {
        status: string;
      };
    const done = await waitFor(
      async () => ((await read()).status === "completed" ? read() : null),
      {
        timeoutMs: 30_000,
        message: "the job to complete",
      },
    ).catch((error: Error) => {
      throw new Error(`${error.message}\n${worker.output()}`);
    });
    expect(done).toMatchObject({ result: { from: "kubernetes" } });
  });

  it("answers the worker's probes on its health port", async () => {
    const container = mainContainer(workerPod);
    await started(worker, healthPort, container.startupProbe);
    expect(await status(healthPort, container.livenessProbe?.httpGet?.path)).toBe(200);
    expect(await status(healthPort, container.readinessProbe?.httpGet?.path)).toBe(200);
  });

  it("stops cleanly on SIGTERM before the pod's grace period ends", async () => {
    for (const [run, pod] of [
      [api, apiPod],
      [worker, workerPod],
    ] as const) {
      // The kubelet runs preStop, then SIGTERM; SIGKILL comes at terminationGracePeriodSeconds.
      const left =
        pod.spec.template.spec.terminationGracePeriodSeconds! - preStopSeconds(mainContainer(pod));
      run.child.kill("SIGTERM");
      expect(await exitWithin(run, left), run.output()).toBe(0);
      expect(run.output()).not.toMatch(/ERR_ACCESS_DENIED/);
    }
  });
});

// ---- the KEDA query, against a real schema --------------------------------------------------------

describe("the KEDA query", () => {
  // Jobs are made through the library and a real worker (not written into the tables), so the
  // test holds whatever the storage looks like: ready jobs are of a task no worker runs, running
  // jobs are held by a worker until the end, finished jobs ran.
  const held = deferred();
  const hold = defineTask({ name: "test.hold", handler: () => held.promise });
  const quick = defineTask({ name: "test.quick", handler: () => "done" });
  const other = defineTask({ name: "test.other", handler: () => "never run here" });
  let db: TestDb;
  /** The worker's own client: it knows every task but test.other, so those jobs stay ready. */
  let runner: Pgwake | undefined;
  let worker: Worker | undefined;
  /** A ScaledObject's query, on this test's schema. */
  const onSchema = (scaled: ScaledObjectResource) => (schema: string) =>
    scaled.spec.triggers[0]!.metadata.query!.replace(/\bpgwake\./g, `"${schema}".`);
  /** The example overlay's (queues default and emails), and the component's own (default). */
  const example = onSchema(
    ofKind<ScaledObjectResource>(render("overlays/example"), "ScaledObject")[0]!,
  );
  const component = onSchema(
    parse(readFileSync(join(DEPLOY, "components/keda/scaledobject.yaml"), "utf8")),
  );
  const load = async (query: string) => {
    const { rows } = await db.pool.query<{ load: string }>(`SELECT * FROM (${query}) AS q(load)`);
    expect(rows).toHaveLength(1);
    return Number(rows[0]!.load);
  };
  const enqueue = async (task: string, queue: string, count: number, delayMs = 0) => {
    for (let done = 0; done < count; done += 1_000) {
      const jobs = Array.from({ length: Math.min(1_000, count - done) }, () => ({
        task,
        queue,
        ...(delayMs ? { delayMs } : {}),
      }));
      await db.pgwake.enqueueMany(jobs);
    }
  };
  const statuses = async (ids: number[]) =>
    Promise.all(ids.map(async (id) => (await db.pgwake.getJob(id))?.status));

  beforeAll(async () => {
    db = await createTestDb("kubernetes_keda", { tasks: [hold, quick, other] });
    // The example's workers serve default and emails; reports is another Deployment's.
    await enqueue("test.other", "default", 3);
    await enqueue("test.other", "default", 2, 3_600_000);
    await enqueue("test.other", "emails", 2);
    await enqueue("test.other", "reports", 5);
    const running = await db.pgwake.enqueueMany(
      ["default", "default", "emails", "reports"].map((queue) => ({ task: "test.hold", queue })),
    );
    const finished = await db.pgwake.enqueueMany([
      { task: "test.quick", queue: "default" },
      { task: "test.quick", queue: "emails" },
    ]);
    runner = new Pgwake({ connectionString: db.url, schema: db.schema, tasks: [hold, quick] });
    // Running jobs are counted as workers report them with their heartbeat: a short one here.
    worker = runner.worker({
      queues: ["default", "emails", "reports"],
      concurrency: 8,
      heartbeatMs: 200,
    });
    await worker.start();
    const ids = (jobs: { job: { id: number } }[]) => jobs.map((r) => r.job.id);
    await waitFor(
      async () =>
        (await statuses(ids(running))).every((s) => s === "running") &&
        (await statuses(ids(finished))).every((s) => s === "completed"),
      { timeoutMs: 20_000, message: "held jobs running and quick ones completed" },
    );
    await waitFor(
      async () =>
        (
          await db.query<{ n: number }>(
            "SELECT coalesce(sum(running), 0)::integer AS n FROM {{schema}}.workers",
          )
        )[0]!.n === 4,
      { timeoutMs: 10_000, message: "the worker's heartbeat to report its 4 running jobs" },
    );
  });
  afterAll(async () => {
    held.resolve();
    await worker?.stop({ graceMs: 5_000 });
    await runner?.close();
    await db?.close();
  });

  it("counts jobs ready now and running, in the workers' queues only", async () => {
    // default: 3 ready + 2 running; emails: 2 ready + 1 running. Not counted: jobs due in an
    // hour, finished jobs, and the reports queue.
    expect(await load(example(db.schema))).toBe(8);
    expect(await load(component(db.schema))).toBe(5);
  });

  it("does not count a paused queue's waiting jobs (its running ones still count)", async () => {
    await db.pgwake.pauseQueue("emails");
    try {
      expect(await load(example(db.schema))).toBe(6);
    } finally {
      await db.pgwake.resumeQueue("emails");
    }
  });

  it("reads indexes only: no sequential scan of the jobs table, however many jobs wait", async () => {
    // Many jobs due later in a queue the workers serve, many ready in a queue they do not.
    await enqueue("test.other", "default", 10_000, 3_600_000);
    await enqueue("test.other", "reports", 10_000);
    await db.query("ANALYZE {{schema}}.jobs");
    const client = await db.pool.connect();
    try {
      await client.query("BEGIN");
      await client.query("SET LOCAL max_parallel_workers_per_gather = 0");
      const scans = async () => {
        const { rows } = await client.query<{ seq_scan: string }>(
          "SELECT seq_scan FROM pg_stat_xact_user_tables WHERE relid = $1::regclass",
          [`"${db.schema}".jobs`],
        );
        return Number(rows[0]!.seq_scan);
      };
      const before = await scans();
      // Six runs: a PL/pgSQL function may switch to a generic plan after five (KEDA's pool
      // keeps its connection).
      for (let i = 0; i < 6; i++) {
        const { rows } = await client.query(example(db.schema));
        expect(Number(Object.values(rows[0] as object)[0])).toBe(8);
      }
      expect((await scans()) - before, "sequential scans of jobs by six runs").toBe(0);
      // The counter does see a sequential scan (so the check can fail).
      await client.query(`SELECT count(*) FROM "${db.schema}".jobs WHERE payload IS NOT NULL`);
      expect(await scans()).toBeGreaterThan(before);
      await client.query("COMMIT");
    } finally {
      // Destroyed, not returned: a failure above leaves its transaction open.
      client.release(true);
    }
  });
});
