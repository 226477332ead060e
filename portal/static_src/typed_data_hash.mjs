// Reads EIP-712 typed data (the JSON the server gives the page) on stdin and prints the digest viem computes:
// the same library and call the browser bundle signs with. Used by the unit tests that hold the browser,
// the server and the contract to one hash.
import { hashTypedData } from "viem";

let input = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk) => (input += chunk));
process.stdin.on("end", () => {
  const typed = JSON.parse(input);
  process.stdout.write(hashTypedData(typed) + "\n");
});
