// Copies Leaflet's built files from node_modules into vendor/leaflet/, so the
// page (embedded into eoc-server at compile time) needs no npm at run time.
// Run after changing Leaflet's version in package.json: `npm run vendor`.
import { cpSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const from = join(root, 'node_modules', 'leaflet');
const to = join(root, 'vendor', 'leaflet');

const version = JSON.parse(readFileSync(join(from, 'package.json'), 'utf8')).version;
rmSync(to, { recursive: true, force: true });
mkdirSync(join(to, 'images'), { recursive: true });
for (const file of ['leaflet.js', 'leaflet.css']) {
  cpSync(join(from, 'dist', file), join(to, file));
}
cpSync(join(from, 'dist', 'images'), join(to, 'images'), { recursive: true });
cpSync(join(from, 'LICENSE'), join(to, 'LICENSE'));
writeFileSync(join(to, 'VERSION'), `${version}\n`);
console.log(`vendored leaflet ${version} into ${to}`);
