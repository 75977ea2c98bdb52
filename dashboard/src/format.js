// Formatting of numbers, ages, distances and intensities for display, and
// the map's colour scales. Pure (time is passed in), tested in
// test/format.test.js.

import { locale, t } from './i18n.js';

const numberFormats = new Map();

/** A whole number with the locale's grouping: 12345 → "12,345". */
export function formatNumber(n) {
  if (n === null || n === undefined || Number.isNaN(n)) return '—';
  const loc = locale();
  if (!numberFormats.has(loc)) numberFormats.set(loc, new Intl.NumberFormat(loc, { maximumFractionDigits: 0 }));
  return numberFormats.get(loc).format(n);
}

/** How long ago, from a duration in ms: "just now", "45 s ago", "12 min ago", "3 h ago", "2 d ago". */
export function formatAge(ageMs) {
  if (ageMs === null || ageMs === undefined) return t('teams.never');
  const s = Math.floor(Math.max(0, ageMs) / 1000);
  if (s < 5) return t('age.now');
  if (s < 60) return t('age.seconds', { n: s });
  if (s < 3600) return t('age.minutes', { n: Math.floor(s / 60) });
  if (s < 86400) return t('age.hours', { n: Math.floor(s / 3600) });
  return t('age.days', { n: Math.floor(s / 86400) });
}

/** The age of an RFC 3339 time at `nowMs`, formatted. */
export function formatSince(iso, nowMs) {
  if (!iso) return t('teams.never');
  const at = Date.parse(iso);
  return Number.isNaN(at) ? t('teams.never') : formatAge(nowMs - at);
}

/** A distance: "850 m" below 1 km, "12.3 km" below 100 km, else "142 km". */
export function formatDistance(m) {
  if (m < 1000) return t('unit.m', { n: Math.round(m) });
  if (m < 100_000) return t('unit.km', { n: (m / 1000).toFixed(1) });
  return t('unit.km', { n: formatNumber(Math.round(m / 1000)) });
}

const ROMAN = ['0', 'I', 'II', 'III', 'IV', 'V', 'VI', 'VII', 'VIII', 'IX'];

/** The MSK-64 band of an intensity, as the server labels it: the integer part in Roman numerals, "X+" from 10. */
export function intensityBand(intensity) {
  if (intensity === null || intensity === undefined || Number.isNaN(intensity)) return '—';
  const b = Math.floor(intensity);
  if (b >= 10) return 'X+';
  return ROMAN[Math.max(0, b)];
}

/**
 * Colour-blind-safe steps for intensity bands VI … X+ (cividis-like: dark
 * blue through grey to yellow; they differ in lightness, so they read in
 * grey scale and for every common colour-vision deficiency). Marker size
 * grows with the band too, so colour is never the only cue.
 */
export const INTENSITY_STEPS = [
  { band: 6, label: 'VI', color: '#00224e' },
  { band: 7, label: 'VII', color: '#35456c' },
  { band: 8, label: 'VIII', color: '#666970' },
  { band: 9, label: 'IX', color: '#958f78' },
  { band: 10, label: 'X+', color: '#cbba69' },
];

/** Colour and radius (px) of a village marker for an intensity (null: affected by an area hazard). */
export function intensityStyle(intensity) {
  if (intensity === null || intensity === undefined) return { color: '#35456c', radius: 6 };
  const b = Math.min(10, Math.max(6, Math.floor(intensity)));
  const step = INTENSITY_STEPS[b - 6];
  return { color: step.color, radius: 4 + (b - 5) * 1.5 };
}

/** Fill colour of a site's gauge by level: blue-ish open, orange near full, vermilion full, grey closed (Okabe–Ito). */
export const SITE_COLORS = { open: '#0072b2', near_full: '#e69f00', full: '#d55e00', closed: '#7f7f7f' };

/** Team colour by status (Okabe–Ito), always paired with a shape. */
export const TEAM_COLORS = {
  available: '#009e73',
  en_route: '#56b4e9',
  on_site: '#cc79a7',
  unavailable: '#7f7f7f',
  offline: '#333333',
};

/** Team shape by status. */
export const TEAM_SHAPES = {
  available: 'circle',
  en_route: 'triangle',
  on_site: 'diamond',
  unavailable: 'square',
  offline: 'cross',
};
