// s3/client.ts: s3Client, the one handle every s3* helper takes: the SDK's client and the lean
// request path (fast.ts), on the same kept-alive sockets. Only explicit settings are used: no
// AWS_* variable, profile or config file is read. Nothing of the SDK is loaded by importing
// this file: the lean path's signer on the first request, the SDK's client on the first call
// that needs it.
import { readFileSync } from "node:fs";
import process from "node:process";
import type { S3Client } from "@aws-sdk/client-s3";
import type { SignatureV4 } from "@smithy/signature-v4";
import { UsageError } from "../errors.ts";
import { useContext, type Context } from "../context.ts";
import { builtinModule } from "../lazy.ts";
import { WIRE, wireDeps } from "./fast.ts";

// Not `import … from "node:http"`: see builtinModule.
const { Agent: HttpAgent } = builtinModule<typeof import("node:http")>("node:http");
const { Agent: HttpsAgent } = builtinModule<typeof import("node:https")>("node:https");

/** Options for {@link s3Client}. */
export interface S3Options {
  /** Gateway URL, http or https, e.g. "http://127.0.0.1:7480". */
  endpoint: string;
  /** Signing region (default "us-east-1"); Ceph takes its zonegroup name or any region. */
  region?: string;
  /** Access key id; registered as a secret. */
  accessKey: string;
  /** Secret access key; registered as a secret. */
  secretKey: string;
  /** Path-style URLs, http://host/bucket/key (default true: Ceph and MinIO, and bucket names such as db_wal). */
  forcePathStyle?: boolean;
  /** Attempts per request for calls without a streamed body: bucket calls, listings (default 3; SDK standard retry). */
  maxAttempts?: number;
  /** Sockets kept open to the gateway (default 64; a sync uses up to its concurrency). */
  maxSockets?: number;
  /** Give up connecting after this many ms (default 5000). */
  connectTimeoutMs?: number;
  /** Give up on a request whose socket stays silent this many ms, body included (default 60000); the transfer is then retried. */
  requestTimeoutMs?: number;
  /** PEM file of the CA that signed an https endpoint (default: Node's trust store). AWS_CA_BUNDLE is never read. */
  caFile?: string;
  /** The context whose secrets learn the keys (default: the current one). */
  ctx?: Context;
}

/** A connection to one S3 endpoint; pass it to every s3* helper. */
export interface S3Handle {
  /** The SDK's client (standard retries, maxAttempts) on the same sockets, for calls lifeboat has no helper for. */
  sdk(): Promise<S3Client>;
  /** Endpoint URL, as given. */
  readonly endpoint: string;
  readonly region: string;
  /** Closes the kept-alive sockets. */
  destroy(): void;
}

export type SdkModule = typeof import("@aws-sdk/client-s3");
let sdkModule: Promise<SdkModule> | undefined;
/**
 * The SDK's S3 client module, loaded on first use: a sync that only lists, GETs and PUTs
 * never needs it, and loading it is a tenth of a cold start.
 */
export function sdkLib(): Promise<SdkModule> {
  return (sdkModule ??= import("@aws-sdk/client-s3"));
}

/** The SDK client without retries, for calls made inside a transfer's own retry loop (see patiently). */
export async function onceOf(h: S3Handle): Promise<S3Client> {
  return (await WIRE.get(h)!.clients()).once;
}

/**
 * Makes an S3 client from explicit settings only: no AWS_* variable, profile or config file is
 * read, so a stray environment cannot change the endpoint, keys or region.
 * @example
 * const s3 = s3Client({ endpoint: "http://127.0.0.1:7480", accessKey, secretKey });
 * await s3Sync("s3://registry", "/backup/registry", { client: s3 });
 * s3.destroy();
 */
export function s3Client(opts: S3Options): S3Handle {
  const ctx = opts.ctx ?? useContext();
  let url: URL;
  try {
    url = new URL(opts.endpoint);
  } catch {
    throw new UsageError(`s3: endpoint '${opts.endpoint}' is not a URL`, "give it as http://HOST:PORT or https://HOST");
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new UsageError(`s3: endpoint '${opts.endpoint}' is not http or https`, "give it as http://HOST:PORT or https://HOST");
  }
  if (!opts.accessKey || !opts.secretKey) {
    throw new UsageError(`s3 ${opts.endpoint}: access key or secret key is empty`, "set both keys for this gateway");
  }
  ctx.secrets.add(opts.accessKey);
  ctx.secrets.add(opts.secretKey);
  // The SDK warns on stderr, once per process, that it will drop Node 20 in 2027.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true";
  const maxSockets = opts.maxSockets ?? 64;
  const agent = { keepAlive: true, keepAliveMsecs: 1000, maxSockets, maxFreeSockets: maxSockets };
  const httpAgent = new HttpAgent(agent);
  const httpsAgent = new HttpsAgent({ ...agent, ...(opts.caFile ? { ca: readFileSync(opts.caFile) } : {}) });
  const region = opts.region ?? "us-east-1";
  const credentials = { accessKeyId: opts.accessKey, secretAccessKey: opts.secretKey };
  const connectTimeoutMs = opts.connectTimeoutMs ?? 5000;
  // A silent socket, not a slow transfer, is what fails: big bodies on slow links take long.
  const socketTimeoutMs = opts.requestTimeoutMs ?? 60000;
  type Handler = import("@smithy/node-http-handler").NodeHttpHandler;
  let handler: Handler | undefined;
  const make = (S3: SdkModule["S3Client"], maxAttempts: number, requestHandler: Handler) =>
    new S3({
      endpoint: opts.endpoint,
      region,
      credentials,
      forcePathStyle: opts.forcePathStyle ?? true,
      maxAttempts,
      retryMode: "standard",
      requestHandler,
      // Everything the SDK would otherwise look up in AWS_* variables or ~/.aws/config:
      defaultsMode: "standard",
      requestChecksumCalculation: "WHEN_REQUIRED",
      responseChecksumValidation: "WHEN_REQUIRED",
      useArnRegion: false,
      useDualstackEndpoint: false,
      useFipsEndpoint: false,
      useAccelerateEndpoint: false,
      disableMultiregionAccessPoints: true,
      disableS3ExpressSessionAuth: true,
      sigv4aSigningRegionSet: [region],
      authSchemePreference: ["sigv4"],
      userAgentAppId: "lifeboat",
      followRegionRedirects: false,
    });
  let made: { sdk: S3Client; once: S3Client } | undefined;
  let making: Promise<{ sdk: S3Client; once: S3Client }> | undefined;
  const clients = () =>
    (making ??= Promise.all([sdkLib(), import("@smithy/node-http-handler")]).then(([{ S3Client: S3 }, { NodeHttpHandler }]) => {
      // The handler's requestTimeout only warns unless told to throw, and counts the whole upload: socketTimeout it is.
      handler = new NodeHttpHandler({ httpAgent, httpsAgent, connectionTimeout: connectTimeoutMs, socketTimeout: socketTimeoutMs });
      return (made = { sdk: make(S3, opts.maxAttempts ?? 3, handler), once: make(S3, 1, handler) });
    }));
  let signer: Promise<SignatureV4> | undefined;
  const handle: S3Handle = {
    sdk: async () => (await clients()).sdk,
    endpoint: opts.endpoint,
    region,
    destroy() {
      made?.sdk.destroy();
      made?.once.destroy();
      handler?.destroy();
      httpAgent.destroy();
      httpsAgent.destroy();
    },
  };
  WIRE.set(handle, {
    url,
    pathStyle: opts.forcePathStyle ?? true,
    httpAgent,
    httpsAgent,
    connectTimeoutMs,
    socketTimeoutMs,
    signer: () => (signer ??= wireDeps().then((d) =>
      new d.SignatureV4({ credentials, region, service: "s3", sha256: d.Sha256, uriEscapePath: false, applyChecksum: false }))),
    maxAttempts: opts.maxAttempts ?? 3,
    clients,
  });
  return handle;
}
