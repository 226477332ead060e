// The patient's signing key, in the patient's browser. Bundled by esbuild into portal/static/portal/keys.js
// (npm run build:keys); no inline script, no CDN.
//
// - A key is 32 bytes from WebCrypto (crypto.getRandomValues), written as a 24-word BIP-39 phrase: the phrase
//   IS the key (its entropy), so a key the operator held and handed over ("take your key") gets a phrase too.
// - At rest it is AES-GCM ciphertext in IndexedDB, under a key derived from the passphrase with scrypt
//   (N=2^17, r=8, p=1). Neither the key, the phrase nor the passphrase is ever sent: requests carry addresses
//   and signatures only.
// - It signs the EIP-712 typed data the server put in the page (one definition, shared with the contract).
import { entropyToMnemonic, mnemonicToEntropy, validateMnemonic } from "@scure/bip39";
import { wordlist } from "@scure/bip39/wordlists/english.js";
import { scryptAsync } from "@noble/hashes/scrypt.js";
import { bytesToHex, concat, hexToBytes, keccak256, stringToBytes } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { registrationFor as buildRegistration, signTyped } from "./key_messages.mjs";
import { backupOpen, backupSeal } from "./key_backup.mjs";

const DB_NAME = "healthledger-keys";
const STORE = "keys";
const SCRYPT = { N: 2 ** 17, r: 8, p: 1, dkLen: 32 };
const SECP256K1_N = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n;

function openDb() {
  return new Promise((resolve, reject) => {
    const request = indexedDB.open(DB_NAME, 1);
    request.onupgradeneeded = () => request.result.createObjectStore(STORE, { keyPath: "address" });
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

async function dbDo(mode, action) {
  const db = await openDb();
  return new Promise((resolve, reject) => {
    const request = action(db.transaction(STORE, mode).objectStore(STORE));
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

const sameAddress = (a, b) => !!a && !!b && a.toLowerCase() === b.toLowerCase();

async function wrappingKey(passphrase, salt) {
  const raw = await scryptAsync(stringToBytes(passphrase.normalize("NFKC")), salt, SCRYPT);
  return crypto.subtle.importKey("raw", raw, "AES-GCM", false, ["encrypt", "decrypt"]);
}

// --- Passkey protection (WebAuthn PRF) ------------------------------------------------------------------
// Where the browser and the authenticator support the PRF extension, the key is sealed under a secret the
// passkey derives from a salt kept here (HKDF-SHA-256 of the PRF output into an AES-GCM key): unlocking it
// takes the device's screen lock or a security key, and no passphrase. The passkey is only a local sealing
// device: the server never sees it, so it is no sign-in credential and nothing about it is sent.
const PRF_INFO = stringToBytes("healthledger/key-wrap/prf-v1");

async function prfSupported() {
  if (typeof PublicKeyCredential === "undefined" || !window.isSecureContext) return false;
  if (typeof PublicKeyCredential.getClientCapabilities === "function") {
    try {
      const capabilities = await PublicKeyCredential.getClientCapabilities();
      if (capabilities["extension:prf"] === false) return false;
    } catch {
      return false;
    }
  }
  return true;
}

async function prfOutput(credentialId, prfSalt) {
  const assertion = await navigator.credentials.get({
    publicKey: {
      challenge: crypto.getRandomValues(new Uint8Array(32)),
      allowCredentials: [{ type: "public-key", id: credentialId }],
      userVerification: "required",
      extensions: { prf: { eval: { first: prfSalt } } },
    },
  });
  const results = assertion && assertion.getClientExtensionResults().prf;
  if (!results || !results.results || !results.results.first) {
    throw new Error("This passkey cannot seal keys here (no PRF support). Use a passphrase instead.");
  }
  return new Uint8Array(results.results.first);
}

async function prfWrappingKey(output, salt) {
  const base = await crypto.subtle.importKey("raw", output, "HKDF", false, ["deriveKey"]);
  return crypto.subtle.deriveKey(
    { name: "HKDF", hash: "SHA-256", salt, info: PRF_INFO },
    base,
    { name: "AES-GCM", length: 256 },
    false,
    ["encrypt", "decrypt"],
  );
}

async function passkeyCreate() {
  const prfSalt = crypto.getRandomValues(new Uint8Array(32));
  const credential = await navigator.credentials.create({
    publicKey: {
      rp: { name: "HealthLedger", id: location.hostname },
      user: { id: crypto.getRandomValues(new Uint8Array(16)), name: "healthledger-key", displayName: "HealthLedger signing key" },
      challenge: crypto.getRandomValues(new Uint8Array(32)),
      pubKeyCredParams: [
        { type: "public-key", alg: -7 },
        { type: "public-key", alg: -257 },
      ],
      authenticatorSelection: { residentKey: "preferred", userVerification: "required" },
      extensions: { prf: {} },
    },
  });
  const prf = credential && credential.getClientExtensionResults().prf;
  if (!prf || !prf.enabled) throw new Error("This passkey cannot seal keys here (no PRF support). Use a passphrase instead.");
  const credentialId = new Uint8Array(credential.rawId);
  return { credentialId, prfSalt, output: await prfOutput(credentialId, prfSalt) };
}

// protection: a passphrase (string), or { passkey: true } to seal under a new passkey's PRF secret.
async function storeKey(privateKey, protection) {
  const address = privateKeyToAccount(privateKey).address;
  const salt = crypto.getRandomValues(new Uint8Array(16));
  const iv = crypto.getRandomValues(new Uint8Array(12));
  const aad = stringToBytes("healthledger/key|" + address.toLowerCase());
  let key;
  let kdf;
  if (typeof protection === "string") {
    key = await wrappingKey(protection, salt);
    kdf = { name: "scrypt", ...SCRYPT };
  } else {
    const passkey = await passkeyCreate();
    key = await prfWrappingKey(passkey.output, salt);
    kdf = { name: "webauthn-prf", credentialId: passkey.credentialId, prfSalt: passkey.prfSalt };
  }
  const sealed = await crypto.subtle.encrypt({ name: "AES-GCM", iv, additionalData: aad }, key, hexToBytes(privateKey));
  const record = { address, kdf, salt, iv, sealed: new Uint8Array(sealed), created: Date.now() };
  await dbDo("readwrite", (store) => store.put(record));
  return address;
}

async function usesPasskey(address) {
  const record = address ? await dbDo("readonly", (store) => store.get(address)) : null;
  return !!record && record.kdf && record.kdf.name === "webauthn-prf";
}

// A passphrase field that a passkey-sealed key does not need: hidden and no longer required.
function passphraseNotNeeded(input) {
  if (!input) return;
  input.required = false;
  const field = input.closest(".field") || input.parentElement;
  if (field) field.hidden = true;
}

async function loadKey(address, passphrase) {
  const record = await dbDo("readonly", (store) => store.get(address));
  if (!record) throw new Error("This browser does not hold that key. Recover it on the key page, from your phrase or your server backup.");
  const key =
    record.kdf && record.kdf.name === "webauthn-prf"
      ? await prfWrappingKey(await prfOutput(record.kdf.credentialId, record.kdf.prfSalt), record.salt)
      : await wrappingKey(passphrase, record.salt);
  const aad = stringToBytes("healthledger/key|" + record.address.toLowerCase());
  try {
    const plain = await crypto.subtle.decrypt({ name: "AES-GCM", iv: record.iv, additionalData: aad }, key, record.sealed);
    return bytesToHex(new Uint8Array(plain));
  } catch {
    throw new Error("That passphrase (or passkey) does not open the key held in this browser.");
  }
}

async function hasKey(address) {
  return !!(await dbDo("readonly", (store) => store.get(address)));
}

function newPrivateKey() {
  for (;;) {
    const bytes = crypto.getRandomValues(new Uint8Array(32));
    const n = BigInt(bytesToHex(bytes));
    if (n > 0n && n < SECP256K1_N) return bytesToHex(bytes);
  }
}

const phraseOf = (privateKey) => entropyToMnemonic(hexToBytes(privateKey), wordlist);

function keyOfPhrase(phrase) {
  const words = phrase.trim().toLowerCase().split(/\s+/).join(" ");
  if (!validateMnemonic(words, wordlist)) throw new Error("That is not a valid recovery phrase (24 words).");
  const entropy = mnemonicToEntropy(words, wordlist);
  if (entropy.length !== 32) throw new Error("A recovery phrase here has 24 words.");
  return bytesToHex(entropy);
}

function readJson(id) {
  const node = document.getElementById(id);
  return node ? JSON.parse(node.textContent) : null;
}

function csrfToken() {
  const input = document.querySelector("input[name=csrfmiddlewaretoken]");
  return input ? input.value : "";
}

async function post(url, fields) {
  const body = new URLSearchParams(fields);
  const response = await fetch(url, {
    method: "POST",
    body,
    credentials: "same-origin",
    headers: { "X-CSRFToken": csrfToken() },
  });
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(answer.error || "The server refused this (" + response.status + ").");
  return answer;
}

async function getJson(url) {
  const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(answer.error || "The server refused this (" + response.status + ").");
  return answer;
}

// An external EIP-1193 wallet (a browser extension), as the alternative signer: same typed data, its own key.
function wallet() {
  return typeof window !== "undefined" && window.ethereum && typeof window.ethereum.request === "function"
    ? window.ethereum
    : null;
}

async function walletSign(address, typed) {
  return wallet().request({ method: "eth_signTypedData_v4", params: [address, JSON.stringify(typed)] });
}

function showError(root, message) {
  const box = root.querySelector("[data-key-error]");
  if (!box) return;
  box.textContent = message;
  box.hidden = !message;
}

// --- Signing a grant or a revocation --------------------------------------------------------------------

function checkGrant(typed, scopeCheck, address) {
  const message = typed.message;
  if (!sameAddress(message.patient, address)) throw new Error("This grant does not name your key.");
  const commitment = keccak256(concat([hexToBytes(scopeCheck.commitment_salt), stringToBytes(scopeCheck.scope)]));
  if (commitment.toLowerCase() !== message.terms.scopeCommitment.toLowerCase()) {
    throw new Error("The commitment in this message does not hide the scope shown. Nothing was signed.");
  }
}

function utc(seconds) {
  return new Date(seconds * 1000).toISOString().slice(0, 16).replace("T", " ") + " UTC";
}

function initSignForm(form) {
  const typed = readJson("typed-data");
  const scopeCheck = readJson("scope-check");
  const box = form.querySelector("[data-key-address]");
  const address = box ? box.getAttribute("data-key-address") : "";
  const view = document.querySelector("[data-typed-data-view]");
  if (view) view.textContent = JSON.stringify(typed, null, 2);
  if (typed.primaryType === "Grant") {
    // The dates in plain words are read from the very message that is signed.
    const from = document.querySelector("[data-signed-from]");
    const until = document.querySelector("[data-signed-until]");
    if (from) from.textContent = utc(typed.message.terms.notBefore);
    if (until) until.textContent = utc(typed.message.terms.notAfter);
  }
  usesPasskey(address).then((yes) => yes && passphraseNotNeeded(form.querySelector("[data-key-passphrase]")));
  let signed = false;
  async function signWith(useWallet) {
    const passphraseInput = form.querySelector("[data-key-passphrase]");
    const button = form.querySelector("button[type=submit]");
    showError(form, "");
    button.disabled = true;
    try {
      if (typed.primaryType === "Grant") checkGrant(typed, scopeCheck, address);
      let signature;
      if (useWallet) {
        signature = await walletSign(address, typed);
      } else {
        signature = await signTyped(await loadKey(address, passphraseInput.value), typed);
      }
      form.querySelector("[data-key-signature]").value = signature;
      passphraseInput.value = "";
      signed = true;
      form.submit();
    } catch (error) {
      showError(form, error.message);
      button.disabled = false;
    }
  }
  form.addEventListener("submit", (event) => {
    if (signed) return;
    event.preventDefault();
    signWith(false);
  });
  const walletButton = form.querySelector("[data-wallet-sign]");
  if (walletButton && wallet()) {
    walletButton.hidden = false;
    walletButton.addEventListener("click", () => signWith(true));
  }
}

// --- Erasure: every live grant's revocation, signed at once ---------------------------------------------

function initEraseForm(form) {
  const items = readJson("revocations-typed-data") || [];
  Promise.all(items.map((item) => usesPasskey(item.signer))).then((all) => {
    if (all.length && all.every(Boolean)) passphraseNotNeeded(form.querySelector("[data-key-passphrase]"));
  });
  let signed = false;
  async function signAll(useWallet) {
    const passphraseInput = form.querySelector("[data-key-passphrase]");
    showError(form, "");
    try {
      const keys = {};
      const signatures = {};
      for (const item of items) {
        if (useWallet) {
          signatures[item.grant_id] = await walletSign(item.signer, item.typed_data);
          continue;
        }
        if (!keys[item.signer]) keys[item.signer] = await loadKey(item.signer, passphraseInput.value);
        signatures[item.grant_id] = await signTyped(keys[item.signer], item.typed_data);
      }
      form.querySelector("[data-revocation-signatures]").value = JSON.stringify(signatures);
      passphraseInput.value = "";
      signed = true;
      form.submit();
    } catch (error) {
      showError(form, error.message);
    }
  }
  form.addEventListener("submit", (event) => {
    if (signed || items.length === 0) return;
    event.preventDefault();
    signAll(false);
  });
  const walletButton = form.querySelector("[data-wallet-sign]");
  if (walletButton && wallet()) {
    walletButton.hidden = false;
    walletButton.addEventListener("click", () => signAll(true));
  }
}

// --- The key page: create, take, recover, rotate -------------------------------------------------------

function passphraseOf(form) {
  const passkey = form.querySelector("[data-use-passkey]");
  if (passkey && passkey.checked) return { passkey: true };
  const one = form.querySelector("[data-passphrase]").value;
  const two = form.querySelector("[data-passphrase-again]").value;
  if (one.length < 10) throw new Error("Choose a passphrase of at least 10 characters.");
  if (one !== two) throw new Error("The two passphrases differ.");
  return one;
}

function registrationFor(address, previous) {
  return buildRegistration(readJson("registration-typed-data"), address, previous);
}

function clearInputs(form) {
  form.querySelectorAll("input, textarea").forEach((input) => {
    if (input.type !== "hidden") input.value = "";
  });
}

function showPhrase(root, phrase) {
  const panel = root.querySelector("[data-phrase-panel]");
  const list = panel.querySelector("[data-phrase-words]");
  const words = phrase.split(" ");
  list.replaceChildren(...words.map((word) => Object.assign(document.createElement("li"), { textContent: word })));
  const picks = [];
  while (picks.length < 2) {
    const n = crypto.getRandomValues(new Uint32Array(1))[0] % words.length;
    if (!picks.includes(n)) picks.push(n);
  }
  picks.sort((a, b) => a - b);
  picks.forEach((n, i) => (panel.querySelector("[data-check-label-" + i + "]").textContent = "Word " + (n + 1)));
  panel.hidden = false;
  return new Promise((resolve) => {
    const check = panel.querySelector("[data-phrase-check]");
    check.onsubmit = (event) => {
      event.preventDefault();
      const given = [...check.querySelectorAll("[data-check-word]")].map((input) => input.value.trim().toLowerCase());
      if (given[0] !== words[picks[0]] || given[1] !== words[picks[1]]) {
        showError(root, "Those words do not match your phrase. Look at it again.");
        return;
      }
      showError(root, "");
      list.replaceChildren();
      clearInputs(check);
      panel.hidden = true;
      resolve();
    };
  });
}

function accountPassword(root) {
  const input = root.querySelector("[data-account-password]");
  return input ? input.value : "";
}

async function register(root, privateKey, previousKey, password) {
  const address = privateKeyToAccount(privateKey).address;
  const previous = previousKey ? privateKeyToAccount(previousKey).address : null;
  const typed = registrationFor(address, previous);
  const fields = { address, signature: await signTyped(privateKey, typed) };
  if (previousKey) fields.previous_signature = await signTyped(previousKey, typed);
  if (password) fields.password = password;
  await post(root.getAttribute("data-register-url"), fields);
}

function done(root) {
  root.querySelectorAll("form.key-form").forEach((form) => (form.hidden = true));
  root.querySelector("[data-key-done]").hidden = false;
}

const ACTIONS = {
  async create(root, form) {
    const passphrase = passphraseOf(form);
    const password = accountPassword(form);
    const privateKey = newPrivateKey();
    clearInputs(form);
    form.hidden = true;
    await showPhrase(root, phraseOf(privateKey));
    await storeKey(privateKey, passphrase);
    await register(root, privateKey, null, password);
    done(root);
  },
  async take(root, form) {
    const passphrase = passphraseOf(form);
    const answer = await post(root.getAttribute("data-take-url"), { password: accountPassword(form) });
    const privateKey = answer.private_key;
    if (!sameAddress(privateKeyToAccount(privateKey).address, root.getAttribute("data-key-address"))) {
      throw new Error("The key handed over is not your registered key.");
    }
    clearInputs(form);
    form.hidden = true;
    await showPhrase(root, phraseOf(privateKey));
    await storeKey(privateKey, passphrase);
    await register(root, privateKey, null, null); // the server destroys its copy once this is accepted
    done(root);
  },
  async recover(root, form) {
    const passphrase = passphraseOf(form);
    const privateKey = keyOfPhrase(form.querySelector("[data-recovery-phrase]").value);
    const address = privateKeyToAccount(privateKey).address;
    // Recovery never registers anything: the phrase must give the key already registered.
    if (!sameAddress(address, root.getAttribute("data-key-address"))) {
      throw new Error("That phrase gives another key than the one registered for you.");
    }
    clearInputs(form);
    await storeKey(privateKey, passphrase);
    done(root);
  },
  async reset(root, form) {
    // The lost key cannot co-sign: the new key alone signs KeyRegistration(account, new, previous = the lost key),
    // and the chain's public waiting time, not a signature of the old key, is what authorises it.
    const passphrase = passphraseOf(form);
    const password = accountPassword(form);
    const privateKey = newPrivateKey();
    const address = privateKeyToAccount(privateKey).address;
    clearInputs(form);
    form.hidden = true;
    await showPhrase(root, phraseOf(privateKey));
    await storeKey(privateKey, passphrase);
    const typed = registrationFor(address, root.getAttribute("data-key-address"));
    await post(root.getAttribute("data-reset-url"), { address, signature: await signTyped(privateKey, typed), password });
    window.location.reload(); // the page now tells where the reset stands
  },
  async "cancel-reset"(root, form) {
    const current = await loadKey(root.getAttribute("data-key-address"), form.querySelector("[data-current-passphrase]").value);
    const typed = readJson("reset-cancel-typed-data");
    clearInputs(form);
    await post(root.getAttribute("data-reset-cancel-url"), { signature: await signTyped(current, typed) });
    window.location.reload();
  },
  async backup(root, form) {
    // The key is sealed here under the backup passphrase; only the ciphertext and the KDF parameters are sent.
    const address = root.getAttribute("data-key-address");
    const one = form.querySelector("[data-backup-passphrase]").value;
    if (one.length < 12) throw new Error("Choose a backup passphrase of at least 12 characters.");
    if (one !== form.querySelector("[data-backup-passphrase-again]").value) throw new Error("The two backup passphrases differ.");
    const current = await loadKey(address, form.querySelector("[data-current-passphrase]").value);
    const blob = await backupSeal(current, one, root.getAttribute("data-record-id"), address);
    clearInputs(form);
    await post(root.getAttribute("data-backup-url"), { ...blob, kdf: JSON.stringify(blob.kdf) });
    window.location.reload(); // the page now says the backup is on
  },
  async restore(root, form) {
    const passphrase = passphraseOf(form);
    const blob = await getJson(root.getAttribute("data-backup-url"));
    const privateKey = await backupOpen(blob, form.querySelector("[data-backup-passphrase]").value, root.getAttribute("data-record-id"));
    // Like recovery from the phrase, a restore registers nothing: it must give the key registered today.
    if (!sameAddress(privateKeyToAccount(privateKey).address, root.getAttribute("data-key-address"))) {
      throw new Error("Your server backup holds another key than the one registered for you; it cannot be restored.");
    }
    clearInputs(form);
    await storeKey(privateKey, passphrase);
    done(root);
  },
  async "backup-delete"(root) {
    await post(root.getAttribute("data-backup-delete-url"), {});
    window.location.reload();
  },
  async rotate(root, form) {
    const current = await loadKey(root.getAttribute("data-key-address"), form.querySelector("[data-current-passphrase]").value);
    const passphrase = passphraseOf(form);
    const privateKey = newPrivateKey();
    clearInputs(form);
    form.hidden = true;
    await showPhrase(root, phraseOf(privateKey));
    await storeKey(privateKey, passphrase);
    await register(root, privateKey, current, null);
    done(root);
  },
};

function initPasskeyChoice(root) {
  root.querySelectorAll("[data-use-passkey]").forEach((box) => {
    const form = box.closest("form");
    const fields = [...form.querySelectorAll("[data-passphrase], [data-passphrase-again]")];
    box.addEventListener("change", () => {
      fields.forEach((input) => {
        input.required = !box.checked;
        const field = input.closest(".field");
        if (field) field.hidden = box.checked;
      });
    });
    prfSupported().then((yes) => {
      const choice = box.closest("[data-passkey-choice]");
      if (yes && choice) choice.hidden = false;
    });
  });
}

async function initKeyPage(root) {
  const address = root.getAttribute("data-key-address");
  initPasskeyChoice(root);
  if (await usesPasskey(address)) root.querySelectorAll("[data-current-passphrase]").forEach(passphraseNotNeeded);
  if (root.getAttribute("data-key-custody") === "browser") {
    const here = await hasKey(address);
    const marker = document.querySelector(here ? "[data-key-here]" : "[data-key-missing]");
    if (marker) marker.hidden = false;
  }
  const walletButton = root.querySelector("[data-wallet-register]");
  if (walletButton && wallet()) {
    walletButton.hidden = false;
    walletButton.addEventListener("click", async () => {
      showError(root, "");
      try {
        const [address] = await wallet().request({ method: "eth_requestAccounts" });
        const typed = registrationFor(address, null);
        const signature = await walletSign(address, typed);
        await post(root.getAttribute("data-register-url"), { address, signature, password: accountPassword(root) });
        done(root);
      } catch (error) {
        showError(root, error.message);
      }
    });
  }
  root.querySelectorAll("form[data-key-action]").forEach((form) => {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      showError(root, "");
      try {
        await ACTIONS[form.getAttribute("data-key-action")](root, form);
      } catch (error) {
        form.hidden = false;
        showError(root, error.message);
      }
    });
  });
}

document.addEventListener("DOMContentLoaded", () => {
  const page = document.querySelector("[data-key-page]");
  if (page) initKeyPage(page);
  document.querySelectorAll("form[data-sign-typed]").forEach(initSignForm);
  document.querySelectorAll("form[data-sign-erase]").forEach(initEraseForm);
});
