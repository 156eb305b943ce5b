'use strict';
// Waits shared by the Node suites (tests/js, tests/browser): every wait has a timeout.

/** Resolves or rejects as `promise` does, or rejects after `ms` naming `what`. */
function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

module.exports = { withTimeout };
