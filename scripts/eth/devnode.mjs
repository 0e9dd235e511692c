// A throwaway Ethereum dev chain for signalhub's wallet-tier tests.
//
// Starts ganache on 127.0.0.1 (a free port, deterministic accounts), compiles TestToken.sol
// with solc-js, deploys it from account[0], then transfers WHALE_AMOUNT to account[1] and
// HOLDER_AMOUNT to account[2]; account[3] holds none. Prints exactly one JSON line on stdout:
//
//   {"rpc_url":"http://127.0.0.1:PORT","token":"0x..","whale":"0x..","holder":"0x..","nobody":"0x.."}
//
// and keeps running until SIGTERM or SIGINT (or until its parent process goes away).
// Everything else (diagnostics) goes to stderr.
//
//   cd scripts/eth && npm ci && node devnode.mjs
//
// Amounts (token has 18 decimals): supply 1,000,000 SHT, whale 100,000 SHT, holder 1,000 SHT.

import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import ganache from "ganache";
import solc from "solc";

const UNIT = 10n ** 18n;
export const SUPPLY = 1_000_000n * UNIT;
export const WHALE_AMOUNT = 100_000n * UNIT;
export const HOLDER_AMOUNT = 1_000n * UNIT;

const here = dirname(fileURLToPath(import.meta.url));

function log(...args) {
  console.error("devnode:", ...args);
}

function compile() {
  const source = readFileSync(join(here, "TestToken.sol"), "utf8");
  const input = {
    language: "Solidity",
    sources: { "TestToken.sol": { content: source } },
    settings: {
      // "paris" avoids PUSH0 and later opcodes whatever ganache's default hardfork is.
      evmVersion: "paris",
      optimizer: { enabled: true, runs: 200 },
      outputSelection: { "*": { "*": ["evm.bytecode.object"] } },
    },
  };
  const output = JSON.parse(solc.compile(JSON.stringify(input)));
  const errors = (output.errors ?? []).filter((e) => e.severity === "error");
  if (errors.length > 0) {
    throw new Error(`solc: ${errors.map((e) => e.formattedMessage).join("\n")}`);
  }
  return output.contracts["TestToken.sol"].TestToken.evm.bytecode.object;
}

const word = (hex) => hex.replace(/^0x/, "").padStart(64, "0");
const uint = (n) => word(n.toString(16));

async function waitReceipt(provider, hash) {
  for (let i = 0; i < 100; i++) {
    const receipt = await provider.request({ method: "eth_getTransactionReceipt", params: [hash] });
    if (receipt) {
      if (receipt.status !== "0x1") throw new Error(`transaction ${hash} reverted`);
      return receipt;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`no receipt for ${hash}`);
}

async function send(provider, tx) {
  const hash = await provider.request({ method: "eth_sendTransaction", params: [tx] });
  return waitReceipt(provider, hash);
}

async function balanceOf(provider, token, who) {
  const data = "0x70a08231" + word(who);
  const result = await provider.request({ method: "eth_call", params: [{ to: token, data }, "latest"] });
  return BigInt(result);
}

async function main() {
  const bytecode = compile();
  const server = ganache.server({
    wallet: { deterministic: true, totalAccounts: 4 },
    logging: { quiet: true },
    chain: { vmErrorsOnRPCResponse: true },
  });
  await server.listen(0, "127.0.0.1");
  const { port } = server.address();
  const provider = server.provider;

  let stopping = false;
  const stop = async (why) => {
    if (stopping) return;
    stopping = true;
    log(`stopping (${why})`);
    setTimeout(() => process.exit(0), 2000).unref(); // do not wait on lingering clients
    try {
      await server.close();
    } finally {
      process.exit(0);
    }
  };
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));
  // Do not outlive a test runner that died without killing us.
  const parent = process.ppid;
  setInterval(() => {
    if (process.ppid !== parent) stop("parent exited");
  }, 1000).unref();

  const [deployer, whale, holder, nobody] = await provider.request({ method: "eth_accounts", params: [] });
  const deployed = await send(provider, {
    from: deployer,
    data: "0x" + bytecode + uint(SUPPLY),
    gas: "0x2dc6c0",
  });
  const token = deployed.contractAddress;
  const transfer = (to, amount) =>
    send(provider, { from: deployer, to: token, data: "0xa9059cbb" + word(to) + uint(amount), gas: "0x186a0" });
  await transfer(whale, WHALE_AMOUNT);
  await transfer(holder, HOLDER_AMOUNT);

  const got = await Promise.all([whale, holder, nobody].map((a) => balanceOf(provider, token, a)));
  if (got[0] !== WHALE_AMOUNT || got[1] !== HOLDER_AMOUNT || got[2] !== 0n) {
    throw new Error(`unexpected balances after setup: ${got.join(", ")}`);
  }

  const line = { rpc_url: `http://127.0.0.1:${port}`, token, whale, holder, nobody };
  process.stdout.write(JSON.stringify(line) + "\n");
  log(`ready on 127.0.0.1:${port}`);
  // Ganache's listening socket keeps the process alive until stop().
}

main().catch((err) => {
  log(err?.stack ?? String(err));
  process.exit(1);
});
