import assert from 'node:assert/strict';
import { test } from 'node:test';

import { formatAge, formatDistance, formatNumber, formatSince, intensityBand, intensityStyle } from '../src/format.js';
import { setLocale, t } from '../src/i18n.js';

setLocale('en');

test('numbers are grouped', () => {
  assert.equal(formatNumber(0), '0');
  assert.equal(formatNumber(1234567), '1,234,567');
  assert.equal(formatNumber(12.6), '13');
  assert.equal(formatNumber(null), '—');
});

test('ages read as a person would say them', () => {
  assert.equal(formatAge(0), 'just now');
  assert.equal(formatAge(4_999), 'just now');
  assert.equal(formatAge(45_000), '45 s ago');
  assert.equal(formatAge(12 * 60_000 + 59_000), '12 min ago');
  assert.equal(formatAge(3 * 3_600_000), '3 h ago');
  assert.equal(formatAge(2 * 86_400_000 + 5), '2 d ago');
  assert.equal(formatAge(null), 'never');
  assert.equal(formatAge(-5_000), 'just now', 'a clock slightly ahead is not a negative age');
  const now = Date.parse('2025-03-14T05:00:00Z');
  assert.equal(formatSince('2025-03-14T04:50:00Z', now), '10 min ago');
  assert.equal(formatSince(undefined, now), 'never');
});

test('distances switch from metres to kilometres', () => {
  assert.equal(formatDistance(850.4), '850 m');
  assert.equal(formatDistance(12_345), '12.3 km');
  assert.equal(formatDistance(142_400), '142 km');
});

test('intensity bands match the server labels', () => {
  assert.equal(intensityBand(5.99), 'V');
  assert.equal(intensityBand(6.0), 'VI');
  assert.equal(intensityBand(7.9), 'VII');
  assert.equal(intensityBand(9.99), 'IX');
  assert.equal(intensityBand(10.2), 'X+');
  assert.equal(intensityBand(undefined), '—');
});

test('stronger shaking draws bigger markers in a different colour', () => {
  const six = intensityStyle(6.4);
  const nine = intensityStyle(9.1);
  assert.ok(nine.radius > six.radius);
  assert.notEqual(nine.color, six.color);
  assert.deepEqual(intensityStyle(12), intensityStyle(10.1), 'X+ is the top step');
});

test('strings fill placeholders and fall back to the key', () => {
  assert.equal(t('chair.vertices', { count: 3 }), '3 corners');
  assert.equal(t('no.such.key'), 'no.such.key');
  assert.equal(setLocale('xx'), 'en');
});
