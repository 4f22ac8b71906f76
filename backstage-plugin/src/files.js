'use strict';

/**
 * Writing rendered files into the scaffolder's workspace: from a dry run's `directoryContents`
 * (base64) or from a stored workspace's tar.gz (ustar with pax headers, as Python's tarfile writes).
 * Every path is checked to stay inside the workspace: the files come from a template.
 */

const fs = require('node:fs/promises');
const path = require('node:path');
const zlib = require('node:zlib');

const BLOCK = 512;

/** The absolute path of `relative` under `root`, or an error when it would leave it. */
function inside(/** @type {string} */ root, /** @type {string} */ relative) {
  const target = path.resolve(root, relative);
  if (path.isAbsolute(relative) || (target !== root && !target.startsWith(root + path.sep))) {
    throw new Error(`refusing to write ${JSON.stringify(relative)}: it is outside the workspace`);
  }
  return target;
}

/** @param {string} root @param {string} relative @param {Buffer} content @param {boolean} executable */
async function writeFile(root, relative, content, executable) {
  const target = inside(root, relative);
  await fs.mkdir(path.dirname(target), { recursive: true });
  await fs.writeFile(target, content, { mode: executable ? 0o755 : 0o644 });
}

/**
 * @param {string} root
 * @param {{ path: string, executable?: boolean, base64Content: string }[]} contents
 * @returns {Promise<string[]>} the paths written
 */
async function writeDirectoryContents(root, contents) {
  for (const file of contents) {
    await writeFile(root, file.path, Buffer.from(file.base64Content, 'base64'), Boolean(file.executable));
  }
  return contents.map(file => file.path);
}

/** @param {Buffer} header @param {number} offset @param {number} length */
function field(header, offset, length) {
  const raw = header.subarray(offset, offset + length);
  const end = raw.indexOf(0);
  return raw.subarray(0, end === -1 ? length : end).toString('utf8');
}

/** pax extended header records: `<length> <key>=<value>\n`. @param {Buffer} data */
function paxRecords(data) {
  /** @type {Record<string, string>} */
  const records = {};
  let offset = 0;
  while (offset < data.length) {
    const space = data.indexOf(0x20, offset);
    if (space === -1) break;
    const length = Number.parseInt(data.subarray(offset, space).toString('utf8'), 10);
    if (!(length > 0)) break;
    const record = data.subarray(space + 1, offset + length - 1).toString('utf8');
    const equals = record.indexOf('=');
    if (equals !== -1) records[record.slice(0, equals)] = record.slice(equals + 1);
    offset += length;
  }
  return records;
}

/**
 * Unpacks a workspace archive into `root`: regular files and directories, with the archive's
 * top directory (`strip`) removed. Links and devices are skipped: a workspace has none to keep.
 * @param {string} root @param {Buffer} archive @param {string} strip
 * @returns {Promise<string[]>} the files written, relative to root
 */
async function extractWorkspace(root, archive, strip) {
  const tar = zlib.gunzipSync(archive);
  const written = [];
  /** @type {Record<string, string>} */
  let pax = {};
  let longName = '';
  for (let offset = 0; offset + BLOCK <= tar.length; ) {
    const header = tar.subarray(offset, offset + BLOCK);
    if (header.every(byte => byte === 0)) break;
    const size = Number.parseInt(field(header, 124, 12).trim() || '0', 8);
    const type = String.fromCharCode(header[156] || 0x30);
    const data = tar.subarray(offset + BLOCK, offset + BLOCK + size);
    offset += BLOCK + Math.ceil(size / BLOCK) * BLOCK;
    if (type === 'x') {
      pax = paxRecords(data);
      continue;
    }
    if (type === 'g') continue;
    if (type === 'L') {
      longName = field(data, 0, data.length);
      continue;
    }
    const prefix = field(header, 345, 155);
    const name = pax.path || longName || (prefix ? `${prefix}/${field(header, 0, 100)}` : field(header, 0, 100));
    const mode = Number.parseInt(field(header, 100, 8).trim() || '644', 8);
    pax = {};
    longName = '';
    const parts = name.split('/').filter(part => part && part !== '.');
    if (parts[0] === strip) parts.shift();
    if (!parts.length) continue;
    const relative = parts.join('/');
    if (type === '5') {
      await fs.mkdir(inside(root, relative), { recursive: true });
    } else if (type === '0' || type === '\0' || type === '7') {
      await writeFile(root, relative, Buffer.from(data), (mode & 0o111) !== 0);
      written.push(relative);
    }
  }
  return written;
}

module.exports = { extractWorkspace, writeDirectoryContents, inside };
