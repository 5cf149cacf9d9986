// The owner's phone as Element has it: matrix-js-sdk with the Rust crypto
// (@matrix-org/matrix-sdk-crypto-wasm), the stack Element Web runs, driven by the Python
// tests (tests/support/element_js.py) over JSON lines.
//
// stdin:  one request a line, {"id": N, "cmd": "...", ...arguments}
// stdout: one reply a line per request, {"id": N, "ok": true, "result": ...} or
//         {"id": N, "ok": false, "error": "..."}, and pushed lines without an id:
//         {"push": "timeline", ...} for every room event as this client sees it (after
//         decryption; again when a late key decrypts it) and {"push": "verification", ...}
//         for every change of a verification (phase, emoji, done, cancelled), and
//         {"push": "trust", ...} when Element's view of a user's identity changes.
// stderr: the SDK's own logging (stdout is for the protocol only).
//
// Every push carries "t", this process's wall clock in seconds, so the tests can time
// what the person would see.

// js-sdk 43 declares Node 22; on Node 20 only Promise.withResolvers is missing.
if (typeof Promise.withResolvers !== "function") {
  Promise.withResolvers = function withResolvers() {
    let resolve, reject;
    const promise = new this((res, rej) => { resolve = res; reject = rej; });
    return { promise, resolve, reject };
  };
}

// Keep stdout for the protocol: everything the SDK logs goes to stderr.
for (const level of ["log", "info", "warn", "error", "debug", "trace"]) {
  console[level] = (...args) => process.stderr.write(`[${level}] ${args.map(String).join(" ")}\n`);
}

const sdk = await import("matrix-js-sdk");
const cryptoApi = await import("matrix-js-sdk/lib/crypto-api/index.js");
const { logger } = await import("matrix-js-sdk/lib/logger.js");
logger.setLevel(process.env.ELEMENT_PHONE_LOG || "warn");

const { ClientEvent, MatrixEventEvent, SyncState } = sdk;
const { CryptoEvent, VerificationPhase, VerificationRequestEvent, VerifierEvent } = cryptoApi;
const PHASES = Object.fromEntries(Object.entries(VerificationPhase).filter(([, v]) => typeof v === "number").map(([k, v]) => [v, k]));
const SHIELD_COLOURS = ["none", "grey", "red"];
const SHIELD_REASONS = Object.fromEntries(Object.entries(cryptoApi.EventShieldReason).filter(([, v]) => typeof v === "number").map(([k, v]) => [v, k]));

let client = null;
const verifications = new Map(); // vid -> {request, verifier, sas, done}
let nextVid = 1;

function out(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

function push(kind, body) {
  out({ push: kind, t: Date.now() / 1000, ...body });
}

function need() {
  if (!client) throw new Error("not logged in");
  return client;
}

function crypto() {
  const c = need().getCrypto();
  if (!c) throw new Error("no crypto");
  return c;
}

// --- what the person sees in a room ----------------------------------------------

async function describe(ev) {
  const clear = ev.getContent() ?? {};
  const original = ev.getOriginalContent ? ev.getOriginalContent() : clear;
  const wire = ev.getWireContent() ?? {};
  let shield = null;
  if (ev.isEncrypted() && !ev.isDecryptionFailure()) {
    try {
      const info = await crypto().getEncryptionInfoForEvent(ev);
      if (info) shield = { colour: SHIELD_COLOURS[info.shieldColour] ?? String(info.shieldColour), reason: info.shieldReason === null ? null : (SHIELD_REASONS[info.shieldReason] ?? String(info.shieldReason)) };
    } catch (e) {
      shield = { colour: "error", reason: String(e) };
    }
  }
  return {
    room_id: ev.getRoomId(),
    event_id: ev.getId(),
    type: ev.getType(),
    wire_type: ev.getWireType(),
    sender: ev.getSender(),
    state_key: ev.getStateKey() ?? null,
    content: original,
    relates_to: original["m.relates_to"] ?? wire["m.relates_to"] ?? null,
    encrypted: ev.isEncrypted(),
    failure: ev.isDecryptionFailure() ? String(ev.decryptionFailureReason ?? "unknown") : null,
    thread_root: ev.threadRootId ?? null,
    sender_device: wire.device_id ?? null,
    shield,
    ts: ev.getTs(),
  };
}

async function report(ev) {
  if (!ev.getRoomId() || !ev.getId() || ev.getId().startsWith("~")) return; // local echoes
  if (ev.isEncrypted() && ev.shouldAttemptDecryption && ev.shouldAttemptDecryption()) {
    await need().decryptEventIfNeeded(ev);
  }
  if (ev.isBeingDecrypted && ev.isBeingDecrypted()) return; // the Decrypted event follows
  push("timeline", await describe(ev));
}

function watch(c) {
  c.on(ClientEvent.Event, (ev) => { report(ev).catch((e) => console.error("report", e)); });
  c.on(MatrixEventEvent.Decrypted, (ev) => { report(ev).catch((e) => console.error("report", e)); });
  c.on(CryptoEvent.UserTrustStatusChanged, (userId, status) => {
    push("trust", { user_id: userId, is_verified: status.isVerified(), cross_signing_verified: status.isCrossSigningVerified() });
  });
  c.on(CryptoEvent.VerificationRequestReceived, (request) => {
    const vid = track(request);
    push("verification", { vid, phase: PHASES[request.phase], incoming: true, transaction_id: request.transactionId ?? null, other_user: request.otherUserId, other_device: request.otherDeviceId ?? null });
  });
}

// --- verification ----------------------------------------------------------------

function track(request) {
  const vid = nextVid++;
  const v = { request, verifier: null, sas: null, startedSas: false };
  verifications.set(vid, v);
  const onChange = () => {
    push("verification", { vid, phase: PHASES[request.phase], transaction_id: request.transactionId ?? null, cancel_code: request.cancellationCode ?? null, cancelled_by: request.cancellingUserId ?? null });
    if (request.phase === VerificationPhase.Ready && request.initiatedByMe && v.autoStart && !v.startedSas) {
      v.startedSas = true;
      startSas(vid, v).catch((e) => push("verification", { vid, error: String(e) }));
    }
    if (request.phase === VerificationPhase.Started && request.verifier && !v.verifier) {
      attach(vid, v, request.verifier);
    }
  };
  request.on(VerificationRequestEvent.Change, onChange);
  return vid;
}

function attach(vid, v, verifier) {
  v.verifier = verifier;
  verifier.on(VerifierEvent.ShowSas, (sas) => {
    v.sas = sas;
    push("verification", { vid, phase: "ShowSas", emoji: sas.sas.emoji ?? null, decimal: sas.sas.decimal ?? null, transaction_id: v.request.transactionId ?? null });
  });
  verifier.verify().then(
    () => push("verification", { vid, phase: "Verified", transaction_id: v.request.transactionId ?? null }),
    (e) => push("verification", { vid, phase: "Failed", error: String(e), cancel_code: v.request.cancellationCode ?? null }),
  );
}

async function startSas(vid, v) {
  const verifier = await v.request.startVerification("m.sas.v1");
  if (!v.verifier) attach(vid, v, verifier);
}

async function begin(request) {
  const vid = track(request);
  const v = verifications.get(vid);
  v.autoStart = true;
  if (request.phase === VerificationPhase.Ready && !v.startedSas) {
    v.startedSas = true;
    await startSas(vid, v);
  }
  return { vid, transaction_id: request.transactionId ?? null, phase: PHASES[request.phase] };
}

function verification(vid) {
  const v = verifications.get(vid);
  if (!v) throw new Error(`no verification ${vid}`);
  return v;
}

// --- commands ----------------------------------------------------------------------

const commands = {
  async login({ base_url, user_id, password, device_name }) {
    const bare = sdk.createClient({ baseUrl: base_url });
    const got = await bare.loginRequest({ type: "m.login.password", identifier: { type: "m.id.user", user: user_id }, password, initial_device_display_name: device_name ?? "Element (js-sdk)" });
    client = sdk.createClient({ baseUrl: base_url, userId: got.user_id, accessToken: got.access_token, deviceId: got.device_id });
    await client.initRustCrypto({ useIndexedDB: false });
    watch(client);
    const ready = new Promise((resolve, reject) => {
      client.on(ClientEvent.Sync, (state) => {
        if (state === SyncState.Prepared || state === SyncState.Syncing) resolve();
        if (state === SyncState.Error) reject(new Error("first sync failed"));
      });
    });
    await client.startClient({ initialSyncLimit: 20, threadSupport: true });
    await ready;
    return { user_id: got.user_id, device_id: got.device_id };
  },

  async bootstrap_cross_signing() {
    // Synapse accepts a user's first cross-signing upload without auth (MSC3967).
    await crypto().bootstrapCrossSigning({ authUploadDeviceSigningKeys: async (makeRequest) => { await makeRequest(null); } });
    const status = await crypto().getCrossSigningStatus();
    return { ready: await crypto().isCrossSigningReady(), status };
  },

  async isolation({ exclude_insecure = false, blacklist_unverified = false }) {
    const c = crypto();
    c.setDeviceIsolationMode(exclude_insecure ? new cryptoApi.OnlySignedDevicesIsolationMode() : new cryptoApi.AllDevicesIsolationMode(false));
    c.globalBlacklistUnverifiedDevices = blacklist_unverified;
    return { exclude_insecure, blacklist_unverified: c.globalBlacklistUnverifiedDevices };
  },

  async create_dm({ invite, name }) {
    const c = need();
    const { room_id } = await c.createRoom({
      preset: "trusted_private_chat",
      is_direct: true,
      invite,
      name,
      initial_state: [{ type: "m.room.encryption", state_key: "", content: { algorithm: "m.megolm.v1.aes-sha2" } }],
    });
    const direct = c.getAccountData("m.direct")?.getContent() ?? {};
    for (const user of invite) direct[user] = [...(direct[user] ?? []), room_id];
    await c.setAccountData("m.direct", direct);
    while (!c.getRoom(room_id)) await new Promise((r) => setTimeout(r, 50));
    return { room_id };
  },

  async send({ room_id, body, thread_id = null, content = null }) {
    const message = content ?? { msgtype: "m.text", body };
    const { event_id } = await need().sendMessage(room_id, thread_id, message);
    return { event_id };
  },

  async react({ room_id, event_id, key }) {
    const got = await need().sendEvent(room_id, "m.reaction", { "m.relates_to": { rel_type: "m.annotation", event_id, key } });
    return { event_id: got.event_id };
  },

  async devices({ user_id }) {
    const map = await crypto().getUserDeviceInfo([user_id], true);
    return [...(map.get(user_id)?.values() ?? [])].map((d) => ({ device_id: d.deviceId, display_name: d.displayName ?? null, verified: d.verified, signed_by_owner: d.signatures?.get(user_id) ? [...d.signatures.get(user_id).keys()] : [] }));
  },

  async device_status({ user_id, device_id }) {
    const s = await crypto().getDeviceVerificationStatus(user_id, device_id);
    if (!s) return null;
    return { signed_by_owner: s.signedByOwner, cross_signing_verified: s.crossSigningVerified, locally_verified: s.localVerified, trust_cross_signed_devices: s.trustCrossSignedDevices, is_verified: s.isVerified() };
  },

  async user_status({ user_id }) {
    const s = await crypto().getUserVerificationStatus(user_id);
    return { is_verified: s.isVerified(), cross_signing_verified: s.isCrossSigningVerified(), was_cross_signing_verified: s.wasCrossSigningVerified(), needs_user_approval: s.needsUserApproval };
  },

  async verify_user({ user_id, room_id }) {
    return begin(await crypto().requestVerificationDM(user_id, room_id));
  },

  async verify_device({ user_id, device_id }) {
    return begin(await crypto().requestDeviceVerification(user_id, device_id));
  },

  async verify_confirm({ vid }) {
    const v = verification(vid);
    if (!v.sas) throw new Error("no emoji shown yet");
    await v.sas.confirm();
    return { phase: PHASES[v.request.phase] };
  },

  async verify_mismatch({ vid }) {
    const v = verification(vid);
    if (!v.sas) throw new Error("no emoji shown yet");
    v.sas.mismatch();
    return { phase: PHASES[v.request.phase] };
  },

  // An encrypted attachment (an m.file's `file`), fetched over authenticated media and
  // decrypted as Element does (AES-256-CTR, SHA-256 of the ciphertext checked first).
  async download_encrypted({ file }) {
    const c = need();
    const { webcrypto, createHash } = await import("node:crypto");
    const [server, mediaId] = String(file.url).replace("mxc://", "").split("/");
    const url = `${c.baseUrl}/_matrix/client/v1/media/download/${server}/${mediaId}`;
    const resp = await fetch(url, { headers: { Authorization: `Bearer ${c.getAccessToken()}` } });
    if (!resp.ok) throw new Error(`download ${resp.status}`);
    const cipher = Buffer.from(await resp.arrayBuffer());
    const digest = createHash("sha256").update(cipher).digest("base64").replace(/=+$/, "");
    if (digest !== String(file.hashes.sha256).replace(/=+$/, "")) throw new Error("sha256 mismatch");
    const key = await webcrypto.subtle.importKey("jwk", file.key, { name: "AES-CTR" }, false, ["decrypt"]);
    const iv = Buffer.from(String(file.iv), "base64");
    const plain = await webcrypto.subtle.decrypt({ name: "AES-CTR", counter: iv, length: 64 }, key, cipher);
    return { data_b64: Buffer.from(plain).toString("base64"), ciphertext_len: cipher.length };
  },

  async stop() {
    if (client) client.stopClient();
    setTimeout(() => process.exit(0), 10);
    return {};
  },
};

// --- the JSON-lines loop ---------------------------------------------------------

const { createInterface } = await import("node:readline");
const lines = createInterface({ input: process.stdin });
lines.on("line", (line) => {
  if (!line.trim()) return;
  let req;
  try {
    req = JSON.parse(line);
  } catch (e) {
    out({ id: null, ok: false, error: `bad JSON: ${e}` });
    return;
  }
  const { id, cmd, ...args } = req;
  const handler = commands[cmd];
  if (!handler) {
    out({ id, ok: false, error: `unknown command ${cmd}` });
    return;
  }
  handler(args).then(
    (result) => out({ id, ok: true, result: result ?? null }),
    (e) => out({ id, ok: false, error: e?.stack ?? String(e) }),
  );
});
lines.on("close", () => {
  if (client) client.stopClient();
  process.exit(0);
});
out({ push: "hello", t: Date.now() / 1000, node: process.version });
