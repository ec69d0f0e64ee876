// Each image's [width, height] from its PNG header (IHDR), or null for bytes that are no PNG.
export function sizes(buffers) {
  return buffers.map((b) => (b.subarray(1, 4).toString() === "PNG" ? [b.readUInt32BE(16), b.readUInt32BE(20)] : null));
}

// Ends the process if the client has not finished in time: a hang is a failure, not a stuck test.
export function deadline(ms) {
  return setTimeout(() => { console.log(JSON.stringify({ error: `no answer after ${ms} ms` })); process.exit(2); }, ms);
}
