// Copies the portal's browser libraries from node_modules (pinned in package.json) into
// portal/static/portal/vendor/, with their licences. The copies are committed, so the portal
// works offline and without npm; run `npm run vendor:portal` after changing a pin.
"use strict";
const fs = require("fs");
const path = require("path");

const root = path.resolve(__dirname, "..");
const target = path.join(__dirname, "static", "portal", "vendor");
const files = [
  ["htmx.org/dist/htmx.min.js", "htmx.min.js"],
  ["htmx.org/LICENSE", "htmx.LICENSE.txt"],
  ["chart.js/dist/chart.umd.min.js", "chart.umd.min.js"],
  ["chart.js/LICENSE.md", "chart.js.LICENSE.md"],
];

fs.mkdirSync(target, { recursive: true });
for (const [from, to] of files) {
  let body = fs.readFileSync(path.join(root, "node_modules", from));
  if (to.endsWith(".js")) {
    // The source maps are not copied: drop the pointer so browsers do not ask for them.
    body = Buffer.from(body.toString("utf8").replace(/\n?\/\/# sourceMappingURL=\S+\s*$/, "\n"));
  }
  fs.writeFileSync(path.join(target, to), body);
  console.log(`portal/static/portal/vendor/${to}`);
}
for (const name of ["htmx.org", "chart.js"]) {
  const pkg = require(path.join(root, "node_modules", name, "package.json"));
  console.log(`${name} ${pkg.version}`);
}
