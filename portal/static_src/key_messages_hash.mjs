// Reads {template, key, previous, private_key} on stdin, builds the registration (or rotation) the way keys.js
// does (key_messages.mjs), and prints {typed, digest, signature}: viem's EIP-712 digest and the signature the
// page would send. For the unit tests only; the private key is a throwaway test key.
import { hashTypedData } from "viem";
import { registrationFor, signTyped } from "./key_messages.mjs";

let input = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk) => (input += chunk));
process.stdin.on("end", async () => {
  const request = JSON.parse(input);
  const typed = registrationFor(request.template, request.key, request.previous || null);
  const signature = request.private_key ? await signTyped(request.private_key, typed) : null;
  process.stdout.write(JSON.stringify({ typed, digest: hashTypedData(typed), signature }) + "\n");
});
