// Reads {op: "seal"|"open", private_key, passphrase, record, address, blob} on stdin and seals (or opens) a key
// backup the way keys.js does (key_backup.mjs); prints the backup (or {private_key} / {error}). For the unit tests
// only; the key is a throwaway test key.
import { backupOpen, backupSeal } from "./key_backup.mjs";

let input = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk) => (input += chunk));
process.stdin.on("end", async () => {
  const request = JSON.parse(input);
  let answer;
  try {
    answer =
      request.op === "open"
        ? { private_key: await backupOpen(request.blob, request.passphrase, request.record) }
        : await backupSeal(request.private_key, request.passphrase, request.record, request.address);
  } catch (error) {
    answer = { error: error.message };
  }
  process.stdout.write(JSON.stringify(answer) + "\n");
});
