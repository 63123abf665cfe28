// Bundles src/app.js and the npm packages it imports into one script for the bookstore's
// page at /: testproject/bookstore/static/bookstore/app.js (generated, not committed).
// Run it with `npm run build` after `npm ci`; it fetches nothing.
import { build } from "esbuild";
import { fileURLToPath } from "node:url";

const here = (path) => fileURLToPath(new URL(path, import.meta.url));

await build({
  entryPoints: [here("src/app.js")],
  outfile: here("../bookstore/static/bookstore/app.js"),
  bundle: true,
  format: "iife",
  platform: "browser",
  target: ["es2020"],
  minify: true,
  sourcemap: "linked",
  define: {
    // sockjs-client is written for browserify, which provides these two.
    global: "globalThis",
    "process.env.NODE_ENV": '"production"',
  },
  logLevel: "warning",
});
