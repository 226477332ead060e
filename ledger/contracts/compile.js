#!/usr/bin/env node
// Compiles ConsentRegistry.sol with the pinned npm `solc` (solcjs, standard-JSON API) and writes the artifact.
//
//   node ledger/contracts/compile.js            writes ledger/contracts/ConsentRegistry.json
//   node ledger/contracts/compile.js --stdout   prints the artifact instead (the recompile test compares it)
//
// Source unit names are relative ("ConsentRegistry.sol", "@openzeppelin/..."), never absolute paths, so the
// metadata hash and therefore the bytecode are the same on every checkout.
"use strict";

const fs = require("fs");
const path = require("path");
const solc = require("solc");

const HERE = __dirname;
const ROOT = path.resolve(HERE, "..", "..");
const CONTRACT = "ConsentRegistry";
const SOURCE = `${CONTRACT}.sol`;
const OUTPUT = path.join(HERE, `${CONTRACT}.json`);

// evmVersion is explicit: solc's default target moves with its version, and the in-process EVM and anvil
// both run cancun. viaIR with many optimizer runs trades deploy size for cheaper grants (about 2,500 gas
// less per grant than the legacy pipeline at 200 runs); a grant is sent far more often than a deployment.
const SETTINGS = {
  evmVersion: "cancun",
  viaIR: true,
  optimizer: { enabled: true, runs: 10000 },
  outputSelection: {
    "*": { "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object", "evm.deployedBytecode.immutableReferences"] },
  },
};

function findImports(importPath) {
  if (!importPath.startsWith("@openzeppelin/")) {
    return { error: `import outside @openzeppelin/ is not allowed: ${importPath}` };
  }
  const file = path.join(ROOT, "node_modules", importPath);
  try {
    return { contents: fs.readFileSync(file, "utf8") };
  } catch (err) {
    return { error: `cannot read ${importPath}: ${err.message}` };
  }
}

function compile() {
  const input = {
    language: "Solidity",
    sources: { [SOURCE]: { content: fs.readFileSync(path.join(HERE, SOURCE), "utf8") } },
    settings: SETTINGS,
  };
  const output = JSON.parse(solc.compile(JSON.stringify(input), { import: findImports }));
  const errors = (output.errors || []).filter((e) => e.severity === "error");
  for (const message of output.errors || []) process.stderr.write(message.formattedMessage + "\n");
  if (errors.length) process.exit(1);
  const compiled = output.contracts[SOURCE][CONTRACT];
  const ozVersion = require(path.join(ROOT, "node_modules", "@openzeppelin", "contracts", "package.json")).version;
  return {
    contractName: CONTRACT,
    compiler: { name: "solc", version: solc.version(), settings: { evmVersion: SETTINGS.evmVersion, viaIR: SETTINGS.viaIR, optimizer: SETTINGS.optimizer } },
    openzeppelin: ozVersion,
    abi: compiled.abi,
    bytecode: "0x" + compiled.evm.bytecode.object,
    deployedBytecode: "0x" + compiled.evm.deployedBytecode.object,
    // Byte ranges of the runtime code that the constructor fills in (operator, EIP-712 domain cache).
    immutableReferences: Object.values(compiled.evm.deployedBytecode.immutableReferences || {})
      .flat()
      .sort((a, b) => a.start - b.start),
  };
}

const text = JSON.stringify(compile(), null, 2) + "\n";
if (process.argv.includes("--stdout")) {
  process.stdout.write(text);
} else {
  fs.writeFileSync(OUTPUT, text);
  process.stderr.write(`wrote ${path.relative(ROOT, OUTPUT)}\n`);
}
