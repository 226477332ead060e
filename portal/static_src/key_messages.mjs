// The key messages the browser builds and signs, shared by the bundle (keys.js) and by the unit tests that
// run this very module under node (key_messages_hash.mjs) against the server's and the contract's hashes.
import { privateKeyToAccount } from "viem/accounts";

// KeyRegistration(bytes32 account, address key, address previous): the server's template (domain, types,
// account) with the key being registered and, for a rotation, the key it replaces filled in here.
export function registrationFor(template, key, previous) {
  const typed = JSON.parse(JSON.stringify(template));
  typed.message = { ...typed.message, key };
  if (previous) typed.message.previous = previous;
  return typed;
}

// The EIP-712 signature over typed data, with viem, exactly as the page signs.
export async function signTyped(privateKey, typed) {
  const account = privateKeyToAccount(privateKey);
  return account.signTypedData({
    domain: typed.domain,
    types: typed.types,
    primaryType: typed.primaryType,
    message: typed.message,
  });
}
