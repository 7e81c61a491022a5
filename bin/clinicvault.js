#!/usr/bin/env node
// Entry point of the clinicvault command: runs the compiled CLI (npm run build makes dist/). On Linux and other Unix
// systems the command is bin/clinicvault, which sets glibc's huge-page tunable and runs this file (decision 0030);
// elsewhere (Windows) run this file with node.
import { holdYoungGeneration, setEngineFlags } from '../dist/src-main/engine/pipeline/young-generation.js';

// The main thread only keeps the books; its young generation stays at its initial size (young-generation.ts): the
// peak of every step is lower at the same speed (docs/PERFORMANCE.md, decision 0017).
holdYoungGeneration();
// Less optimizing-compiler work and buffers freed as soon as they are collected (young-generation.ts, decision 0021).
setEngineFlags();

// The vault's key derivation starts before the rest of the CLI loads (early-unlock.ts).
const { startEarlyUnlock } = await import('../dist/src-main/cli/early-unlock.js');
await startEarlyUnlock(process.argv);

const { main } = await import('../dist/src-main/cli/main.js');
process.exitCode = await main(process.argv);
