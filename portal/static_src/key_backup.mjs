// The optional server backup of the patient's key: sealed here, opened here; the server stores only the result.
// AES-256-GCM under a key derived from a backup passphrase with scrypt (@noble/hashes), a fresh 16-byte salt and
// 12-byte nonce per backup, and the record id and the key's address bound as associated data, exactly as
// consent/key_backup.py's backup_associated_data writes it. Used by keys.js (bundled) and by the unit tests
// under node (key_backup_seal.mjs), so the format the tests open in Python is the one the page makes.
import { scryptAsync } from "@noble/hashes/scrypt.js";

export const BACKUP_VERSION = 1;
export const BACKUP_KDF = { name: "scrypt", N: 2 ** 17, r: 8, p: 1, dkLen: 32 };

const utf8 = (text) => new TextEncoder().encode(text);
const toHex = (bytes) => "0x" + [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");

function fromHex(text) {
  const clean = String(text || "").replace(/^0x/, "");
  if (clean.length % 2 || /[^0-9a-fA-F]/.test(clean)) throw new Error("The server backup is damaged.");
  return Uint8Array.from(clean.match(/../g) || [], (pair) => parseInt(pair, 16));
}

export function backupAad(recordId, address) {
  return utf8(`healthledger/key-backup/v${BACKUP_VERSION}|${recordId}|${address.toLowerCase()}`);
}

// The browser pays scrypt's cost with the parameters the backup names: refuse ones outside what the server
// accepts, so a tampered backup cannot make this page run out of memory.
function checkedKdf(kdf) {
  const log2 = Math.log2(kdf && kdf.N);
  if (!kdf || kdf.name !== "scrypt" || !Number.isInteger(log2) || log2 < 15 || log2 > 20) {
    throw new Error("The server backup names a key derivation this page does not use.");
  }
  if (kdf.r !== 8 || kdf.p !== 1 || kdf.dkLen !== 32) throw new Error("The server backup names unknown scrypt parameters.");
  return { N: kdf.N, r: kdf.r, p: kdf.p, dkLen: kdf.dkLen };
}

async function backupKey(passphrase, salt, kdf) {
  const raw = await scryptAsync(utf8(passphrase.normalize("NFKC")), salt, checkedKdf(kdf));
  return crypto.subtle.importKey("raw", raw, "AES-GCM", false, ["encrypt", "decrypt"]);
}

// privateKey: 0x-hex of 32 bytes. Returns what is uploaded: version, address, kdf, salt, nonce, ciphertext (hex).
export async function backupSeal(privateKey, passphrase, recordId, address) {
  const salt = crypto.getRandomValues(new Uint8Array(16));
  const nonce = crypto.getRandomValues(new Uint8Array(12));
  const key = await backupKey(passphrase, salt, BACKUP_KDF);
  const sealed = await crypto.subtle.encrypt(
    { name: "AES-GCM", iv: nonce, additionalData: backupAad(recordId, address) },
    key,
    fromHex(privateKey),
  );
  return {
    version: BACKUP_VERSION,
    address,
    kdf: { ...BACKUP_KDF },
    salt: toHex(salt),
    nonce: toHex(nonce),
    ciphertext: toHex(new Uint8Array(sealed)),
  };
}

// The private key (0x-hex) inside a downloaded backup; a clear error for a wrong passphrase.
export async function backupOpen(blob, passphrase, recordId) {
  if (!blob || blob.version !== BACKUP_VERSION) throw new Error("The server backup has a format this page does not read.");
  const key = await backupKey(passphrase, fromHex(blob.salt), blob.kdf);
  try {
    const plain = await crypto.subtle.decrypt(
      { name: "AES-GCM", iv: fromHex(blob.nonce), additionalData: backupAad(recordId, blob.address) },
      key,
      fromHex(blob.ciphertext),
    );
    return toHex(new Uint8Array(plain));
  } catch {
    throw new Error("That backup passphrase does not open your server backup. Check it and try again.");
  }
}
