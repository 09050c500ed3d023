// One step of a browser test: runs `fn`, prints `ok   name (ms)` or
// `FAIL name: first line of the error`, and returns its result or
// rethrows. Shared by e2e.mjs, wss.mjs and cross_origin.mjs.

export async function step(name, fn) {
  const start = Date.now();
  try {
    const result = await fn();
    console.log(`ok   ${name} (${Date.now() - start} ms)`);
    return result;
  } catch (err) {
    console.log(`FAIL ${name}: ${err.message.split('\n')[0]}`);
    throw err;
  }
}
