// The map: Leaflet on a canvas renderer (`preferCanvas`), so thousands of
// villages, sites and teams are drawn as paths on one canvas rather than as
// DOM nodes. Markers are created once per object and restyled or moved in
// place (never recreated), and Leaflet's canvas batches every change made in
// one animation frame into one redraw.
//
// Shapes carry meaning as well as colour, for colour-blind readers and
// grey-scale video walls: sites are squares whose fill rises with the share
// used (closed: crossed out; full: solid with a heavy border); teams are a
// circle (available), triangle (en route), diamond (on site), square
// (unavailable) or cross (offline), dashed when their position is stale and
// ringed in vermilion when their battery is low.

import {
  INTENSITY_STEPS,
  SITE_COLORS,
  TEAM_COLORS,
  TEAM_SHAPES,
  formatDistance,
  formatNumber,
  intensityBand,
  intensityStyle,
} from './format.js';
import { t } from './i18n.js';
import { allocationLines, intensityRings, siteGauge, taskLines, teamFlags, villageExposure } from './state.js';

const L = globalThis.L;

/** The whole of Tajikistan, for the first view (south-west, north-east). */
export const HOME_BOUNDS = [
  [36.6, 67.3],
  [41.1, 75.2],
];

/** From this zoom on, team ids are written next to their markers. */
export const LABEL_ZOOM = 9;

// ---- canvas shapes ----------------------------------------------------------

function tracePath(ctx, shape, x, y, r) {
  switch (shape) {
    case 'square':
      ctx.rect(x - r, y - r, 2 * r, 2 * r);
      break;
    case 'triangle':
      ctx.moveTo(x, y - r * 1.2);
      ctx.lineTo(x + r * 1.1, y + r * 0.8);
      ctx.lineTo(x - r * 1.1, y + r * 0.8);
      ctx.closePath();
      break;
    case 'diamond':
      ctx.moveTo(x, y - r * 1.3);
      ctx.lineTo(x + r * 1.1, y);
      ctx.lineTo(x, y + r * 1.3);
      ctx.lineTo(x - r * 1.1, y);
      ctx.closePath();
      break;
    case 'cross': {
      const a = r * 0.45;
      ctx.moveTo(x - r, y - r + a);
      ctx.lineTo(x - r + a, y - r);
      ctx.lineTo(x, y - a);
      ctx.lineTo(x + r - a, y - r);
      ctx.lineTo(x + r, y - r + a);
      ctx.lineTo(x + a, y);
      ctx.lineTo(x + r, y + r - a);
      ctx.lineTo(x + r - a, y + r);
      ctx.lineTo(x, y + a);
      ctx.lineTo(x - r + a, y + r);
      ctx.lineTo(x - r, y + r - a);
      ctx.lineTo(x - a, y);
      ctx.closePath();
      break;
    }
    default:
      ctx.arc(x, y, r, 0, Math.PI * 2, false);
  }
}

L.Canvas.include({
  _updateShape(layer) {
    if (!this._drawing || layer._empty()) return;
    const p = layer._point;
    const ctx = this._ctx;
    const r = Math.max(Math.round(layer._radius), 1);
    const o = layer.options;
    ctx.beginPath();
    tracePath(ctx, o.shape, p.x, p.y, r);
    this._fillStroke(ctx, layer);
    if (o.gauge !== undefined && o.gauge !== null && o.gaugeColor) {
      // The gauge: the square fills from the bottom with the share used.
      const h = Math.round(2 * r * o.gauge);
      ctx.globalAlpha = 1;
      ctx.fillStyle = o.gaugeColor;
      ctx.fillRect(p.x - r, p.y + r - h, 2 * r, h);
      ctx.setLineDash([]);
      ctx.lineWidth = o.weight;
      ctx.strokeStyle = o.color;
      ctx.strokeRect(p.x - r, p.y - r, 2 * r, 2 * r);
    }
    if (o.crossed) {
      ctx.beginPath();
      ctx.moveTo(p.x - r, p.y - r);
      ctx.lineTo(p.x + r, p.y + r);
      ctx.moveTo(p.x + r, p.y - r);
      ctx.lineTo(p.x - r, p.y + r);
      ctx.globalAlpha = 1;
      ctx.setLineDash([]);
      ctx.lineWidth = 2;
      ctx.strokeStyle = '#000';
      ctx.stroke();
    }
    if (o.ring) {
      ctx.beginPath();
      ctx.arc(p.x, p.y, r + 4, 0, Math.PI * 2, false);
      ctx.globalAlpha = 1;
      ctx.setLineDash([]);
      ctx.lineWidth = 2.5;
      ctx.strokeStyle = o.ring;
      ctx.stroke();
    }
    if (o.label && this._map && this._map.getZoom() >= LABEL_ZOOM) {
      ctx.globalAlpha = 1;
      ctx.font = '600 11px system-ui, sans-serif';
      ctx.lineWidth = 3;
      ctx.strokeStyle = '#fff';
      ctx.strokeText(o.label, p.x + r + 4, p.y + 4);
      ctx.fillStyle = '#111';
      ctx.fillText(o.label, p.x + r + 4, p.y + 4);
    }
  },
});

/** A circle marker drawn as another shape (and optional gauge, ring, label) on the canvas. */
const ShapeMarker = L.CircleMarker.extend({
  _updatePath() {
    this._renderer._updateShape(this);
  },
});

/** The topmost interactive layer of `renderer` under the pointer of event `e`, if any. */
function hitIn(map, renderer, e) {
  const point = map.mouseEventToLayerPoint(e);
  let hit = null;
  for (let order = renderer._drawFirst; order; order = order.next) {
    if (order.layer.options.interactive && order.layer._containsPoint(point)) hit = order.layer;
  }
  return hit;
}

/**
 * Makes `base` (which receives the pointer) deliver clicks and hovers over
 * a layer of `upper` (drawn above it, pointer-transparent) to that layer.
 * Patches the handlers of the vendored Leaflet 1.9 canvas renderer before
 * it is added to the map, which is when it binds them.
 */
function forwardTeams(map, base, upper) {
  const click = base._onClick;
  base._onClick = function onClick(e) {
    const hit = hitIn(map, upper, e);
    if (hit) upper._fireEvent([hit], e);
    else click.call(this, e);
  };
  const move = base._onMouseMove;
  base._onMouseMove = function onMouseMove(e) {
    if (!this._map || this._map.dragging.moving() || this._map._animatingZoom) return;
    if (hitIn(map, upper, e)) {
      this._handleMouseOut(e);
      upper._handleMouseHover(e, map.mouseEventToLayerPoint(e));
      L.DomUtil.addClass(this._container, 'leaflet-interactive');
    } else {
      if (upper._hoveredLayer) upper._handleMouseOut(e);
      move.call(this, e);
    }
  };
}

/** Diagonal hatching as a canvas pattern: the fill of exercise and test hazards. */
function hatch(color) {
  const c = document.createElement('canvas');
  c.width = 8;
  c.height = 8;
  const ctx = c.getContext('2d');
  ctx.strokeStyle = color;
  ctx.lineWidth = 2;
  ctx.beginPath();
  ctx.moveTo(0, 8);
  ctx.lineTo(8, 0);
  ctx.stroke();
  return ctx.createPattern(c, 'repeat');
}

// ---- styles ------------------------------------------------------------------

function villageStyle(exposure) {
  if (!exposure) {
    return { radius: 2.5, color: '#6b6b6b', weight: 0.5, fillColor: '#bdbdbd', fillOpacity: 0.6, opacity: 0.6, dashArray: null };
  }
  const s = intensityStyle(exposure.intensity);
  return {
    radius: s.radius,
    color: exposure.exercise ? s.color : '#000',
    weight: exposure.exercise ? 2 : 1,
    fillColor: s.color,
    fillOpacity: exposure.exercise ? 0.35 : 0.9,
    opacity: 1,
    dashArray: exposure.exercise ? '3 2' : null,
  };
}

function siteStyle(site) {
  const g = siteGauge(site);
  const color = SITE_COLORS[g.level];
  return {
    shape: 'square',
    radius: g.level === 'full' ? 6 : 5,
    color: g.level === 'full' ? '#000' : color,
    weight: g.level === 'full' ? 2.5 : 1.5,
    fillColor: '#fff',
    fillOpacity: 0.9,
    opacity: 1,
    gauge: g.level === 'closed' ? 0 : g.share,
    gaugeColor: color,
    crossed: g.level === 'closed',
    level: g.level,
  };
}

function teamStyle(team, nowMs) {
  const f = teamFlags(team, nowMs);
  const color = TEAM_COLORS[team.status] || '#333';
  return {
    shape: TEAM_SHAPES[team.status] || 'circle',
    radius: 7,
    color: '#000',
    weight: 1.5,
    fillColor: color,
    fillOpacity: f.stale ? 0.3 : 1,
    opacity: 1,
    dashArray: f.stale ? '3 3' : null,
    ring: f.lowBattery ? '#d55e00' : null,
    label: team.team_id,
    stale: f.stale,
    lowBattery: f.lowBattery,
  };
}

// ---- the map -------------------------------------------------------------------

/**
 * Creates the map in `element`. `handlers.onVillage(village)`,
 * `handlers.onTeam(team)` and `handlers.onMapClick(latlng)` report clicks.
 */
export function createMap(element, handlers) {
  const map = L.map(element, { preferCanvas: true, zoomSnap: 0.25, keyboard: true, worldCopyJump: false });
  map.fitBounds(HOME_BOUNDS);

  // Panes below and above the markers. Teams move all the time, so they
  // have a canvas of their own: a move redraws 1,000 teams, not also the
  // 3,000 villages and 1,700 sites. Leaflet's canvases do not pass pointer
  // events to the one below, so the teams' canvas ignores the pointer
  // (style.css) and the markers' canvas hit-tests teams first and hands
  // their clicks and hovers over (see forwardTeams). The other panes
  // ignore the pointer too.
  const panes = { boundaries: 350, hazard: 360, lines: 370, markers: 400, teams: 410, draft: 450 };
  for (const [name, z] of Object.entries(panes)) map.createPane(name).style.zIndex = String(z);
  const renderers = Object.fromEntries(Object.keys(panes).map((p) => [p, L.canvas({ pane: p, padding: 0.2 })]));
  renderers.villages = renderers.markers;
  renderers.sites = renderers.markers;
  forwardTeams(map, renderers.markers, renderers.teams);

  const layers = {
    boundaries: L.layerGroup().addTo(map),
    hazard: L.layerGroup().addTo(map),
    allocations: L.layerGroup().addTo(map),
    tasks: L.layerGroup().addTo(map),
    villages: L.layerGroup().addTo(map),
    sites: L.layerGroup().addTo(map),
    teams: L.layerGroup().addTo(map),
    draft: L.layerGroup().addTo(map),
  };
  L.control
    .layers(null, {
      [t('board.sites')]: layers.sites,
      [t('board.teams')]: layers.teams,
      [t('legend.intensity')]: layers.villages,
    }, { collapsed: true })
    .addTo(map);
  L.control.scale({ metric: true, imperial: false }).addTo(map);

  const villages = new Map(); // id → {data, marker}
  const sites = new Map();
  const teams = new Map();
  let exposure = new Map();

  map.on('click', (e) => handlers.onMapClick?.(e.latlng));

  async function loadBoundaries(fetchJson, settings) {
    if (settings?.tiles?.url) {
      L.tileLayer(settings.tiles.url, { attribution: settings.tiles.attribution, maxZoom: 18 }).addTo(map);
    }
    const styles = {
      adm2: { color: '#9a9a9a', weight: 0.6, fill: false },
      adm1: { color: '#555', weight: 1.4, fill: false },
      adm0: { color: '#111', weight: 2.5, fill: true, fillColor: '#f3f1ea', fillOpacity: 1 },
    };
    for (const level of ['adm0', 'adm1', 'adm2']) {
      try {
        const geojson = await fetchJson(`/api/v1/boundaries/${level}`);
        L.geoJSON(geojson, { style: styles[level], interactive: false, renderer: renderers.boundaries }).addTo(layers.boundaries);
      } catch (err) {
        console.warn(`boundaries ${level} not loaded`, err);
      }
    }
    // Country fill first, then regions and districts on top of it.
    layers.boundaries.eachLayer((l) => (l.options.style === styles.adm0 ? l.bringToBack() : null));
  }

  function setVillages(list) {
    for (const v of list) {
      if (villages.has(v.village_id)) continue;
      const marker = L.circleMarker([v.lat, v.lon], { ...villageStyle(null), renderer: renderers.villages });
      marker.bindTooltip(() => villageTooltip(v), { sticky: true });
      marker.on('click', (e) => {
        L.DomEvent.stopPropagation(e);
        handlers.onVillage?.(v);
      });
      marker.addTo(layers.villages);
      villages.set(v.village_id, { data: v, marker });
    }
  }

  function villageTooltip(v) {
    const e = exposure.get(v.village_id);
    let text = t('map.village', { name: v.name, district: v.district, population: formatNumber(v.population) });
    if (e && e.intensity !== null) {
      text += ` — ${t('map.intensity', { band: intensityBand(e.intensity), value: e.intensity.toFixed(1) })}`;
    }
    return escapeHtml(text);
  }

  function restyleVillages(store) {
    const next = villageExposure(store);
    const touched = new Set([...exposure.keys(), ...next.keys()]);
    exposure = next;
    for (const id of touched) {
      const entry = villages.get(id);
      if (!entry) continue;
      const e = exposure.get(id);
      entry.marker.setStyle(villageStyle(e));
      entry.marker.setRadius(villageStyle(e).radius);
    }
  }

  function upsertSite(site) {
    const style = siteStyle(site);
    let entry = sites.get(site.site_id);
    if (!entry) {
      const marker = new ShapeMarker([site.lat, site.lon], { ...style, renderer: renderers.sites });
      marker.bindTooltip(() => {
        const s = sites.get(site.site_id).data;
        const g = siteGauge(s);
        return escapeHtml(t('map.site', { name: s.name, used: formatNumber(g.used), capacity: formatNumber(g.capacity), level: t(`sites.level.${g.level}`) }));
      });
      marker.on('click', (e) => {
        L.DomEvent.stopPropagation(e);
        handlers.onSite?.(sites.get(site.site_id).data);
      });
      marker.addTo(layers.sites);
      entry = { data: site, marker };
      sites.set(site.site_id, entry);
    } else {
      entry.data = site;
      entry.marker.setLatLng([site.lat, site.lon]);
      entry.marker.setStyle(style);
      entry.marker.setRadius(style.radius);
    }
  }

  function upsertTeam(team, nowMs) {
    const style = teamStyle(team, nowMs);
    let entry = teams.get(team.team_id);
    if (!entry) {
      const marker = new ShapeMarker([team.lat, team.lon], { ...style, renderer: renderers.teams });
      marker.bindTooltip(() => {
        const tm = teams.get(team.team_id).data;
        return escapeHtml(t('map.team', { name: tm.name, status: t(`status.${tm.status}`) }));
      });
      marker.on('click', (e) => {
        L.DomEvent.stopPropagation(e);
        handlers.onTeam?.(teams.get(team.team_id).data);
      });
      marker.addTo(layers.teams);
      entry = { data: team, marker };
      teams.set(team.team_id, entry);
    } else {
      const moved = entry.data.lat !== team.lat || entry.data.lon !== team.lon;
      entry.data = team;
      if (moved) entry.marker.setLatLng([team.lat, team.lon]);
      entry.marker.setStyle(style);
    }
  }

  function drawHazards(store) {
    layers.hazard.clearLayers();
    for (const alert of store.alerts.values()) {
      if (!alert.active) continue;
      const exercise = alert.status !== 'actual';
      const stroke = exercise ? '#6a3d9a' : '#b30000';
      const dash = exercise ? '8 6' : null;
      const fill = exercise ? hatch(stroke) : stroke;
      if (alert.earthquake) {
        const q = alert.earthquake;
        const impact = store.impacts.get(alert.alert_id);
        for (const ring of intensityRings(impact)) {
          L.circle([q.lat, q.lon], {
            radius: ring.radius_m,
            color: intensityStyle(ring.band).color,
            weight: 2,
            dashArray: dash || '1 0',
            fill: false,
            interactive: false,
            renderer: renderers.hazard,
          }).addTo(layers.hazard);
        }
        new ShapeMarker([q.lat, q.lon], {
          shape: 'diamond',
          radius: 9,
          color: '#000',
          weight: 2,
          fillColor: stroke,
          fillOpacity: 1,
          label: `M${q.magnitude}`,
          renderer: renderers.draft,
        })
          .bindTooltip(escapeHtml(`${alert.headline || alert.alert_id}${exercise ? ' — EXERCISE' : ''}`))
          .addTo(layers.hazard);
      }
      if (alert.area) {
        const opts = { color: stroke, weight: 2, dashArray: dash, fillColor: fill, fillOpacity: exercise ? 0.6 : 0.15, interactive: false, renderer: renderers.hazard };
        if (alert.area.type === 'Circle') {
          L.circle([alert.area.lat, alert.area.lon], { radius: alert.area.radius_m, ...opts }).addTo(layers.hazard);
        } else {
          L.geoJSON(alert.area, { style: () => opts, renderer: renderers.hazard }).addTo(layers.hazard);
        }
      }
    }
  }

  function drawAllocations(store) {
    layers.allocations.clearLayers();
    const lines = allocationLines(store, (id) => {
      const v = villages.get(id)?.data;
      return v ? [v.lat, v.lon] : null;
    });
    if (lines.length) {
      L.polyline(lines.map((l) => [l.from, l.to]), { color: '#0072b2', weight: 1.2, opacity: 0.55, interactive: false, renderer: renderers.lines }).addTo(layers.allocations);
    }
  }

  function drawTasks(store) {
    layers.tasks.clearLayers();
    const lines = taskLines(store);
    const pending = lines.filter((l) => l.state === 'proposed' || l.state === 'assigned');
    const moving = lines.filter((l) => l.state !== 'proposed' && l.state !== 'assigned');
    if (pending.length) {
      L.polyline(pending.map((l) => [l.from, l.to]), { color: '#000', weight: 1.5, dashArray: '4 4', opacity: 0.8, interactive: false, renderer: renderers.lines }).addTo(layers.tasks);
    }
    if (moving.length) {
      L.polyline(moving.map((l) => [l.from, l.to]), { color: '#000', weight: 2, opacity: 0.9, interactive: false, renderer: renderers.lines }).addTo(layers.tasks);
    }
  }

  function prune(markers, live, layer) {
    for (const [id, entry] of markers) {
      if (!live.has(id)) {
        layer.removeLayer(entry.marker);
        markers.delete(id);
      }
    }
  }

  /** Applies what changed in the store (see state.takeChanges) to the map. */
  function update(store, changes, nowMs) {
    if (changes.all) {
      // A snapshot replaces everything: markers of objects it lacks go.
      prune(sites, store.sites, layers.sites);
      prune(teams, store.teams, layers.teams);
      for (const site of store.sites.values()) upsertSite(site);
      for (const team of store.teams.values()) upsertTeam(team, nowMs);
    } else {
      for (const id of changes.sites) upsertSite(store.sites.get(id));
      for (const id of changes.teams) upsertTeam(store.teams.get(id), nowMs);
    }
    const hazardChanged = changes.all || changes.alerts.size > 0 || changes.impacts.size > 0;
    if (hazardChanged) {
      restyleVillages(store);
      drawHazards(store);
      drawAllocations(store);
    } else if (changes.sites.size > 0) {
      drawAllocations(store);
    }
    if (changes.all || changes.tasks.size > 0 || changes.teams.size > 0) drawTasks(store);
  }

  /**
   * Draws now what Leaflet would draw in the next animation frame, so a
   * change reaches the screen in the frame that applied it (one frame
   * sooner) and the frame's measured time includes the drawing. Uses the
   * canvas renderer's redraw request of the vendored Leaflet 1.9.
   */
  function flush() {
    for (const r of new Set(Object.values(renderers))) {
      if (r._redrawRequest) {
        L.Util.cancelAnimFrame(r._redrawRequest);
        r._redraw();
      }
    }
  }

  /** Restyles every team (ages move on with the clock: stale positions). */
  function refreshAges(store, nowMs) {
    for (const team of store.teams.values()) upsertTeam(team, nowMs);
  }

  function showDraft(draft) {
    layers.draft.clearLayers();
    if (!draft) return;
    const color = '#e69f00';
    if (draft.epicentre) {
      new ShapeMarker(draft.epicentre, { shape: 'diamond', radius: 9, color: '#000', weight: 2, fillColor: color, fillOpacity: 1, renderer: renderers.draft, interactive: false }).addTo(layers.draft);
    }
    if (draft.circle) {
      L.circle(draft.circle.center, { radius: draft.circle.radius_m, color, weight: 3, dashArray: '6 4', fillOpacity: 0.1, renderer: renderers.draft, interactive: false }).addTo(layers.draft);
    }
    if (draft.vertices?.length) {
      L.polyline(draft.vertices.concat(draft.vertices.length > 2 ? [draft.vertices[0]] : []), { color, weight: 3, dashArray: '6 4', renderer: renderers.draft, interactive: false }).addTo(layers.draft);
      for (const v of draft.vertices) L.circleMarker(v, { radius: 4, color: '#000', fillColor: color, fillOpacity: 1, weight: 1, renderer: renderers.draft, interactive: false }).addTo(layers.draft);
    }
    for (const v of draft.preview || []) {
      const s = intensityStyle(v.intensity);
      L.circleMarker([v.location[1], v.location[0]], { radius: s.radius + 2, color: s.color, weight: 2, fill: false, dashArray: '2 2', renderer: renderers.draft, interactive: false }).addTo(layers.draft);
    }
  }

  function focus(lat, lon, zoom = 10) {
    map.setView([lat, lon], Math.max(map.getZoom(), zoom));
  }

  function fitPoints(points) {
    if (points.length) map.fitBounds(L.latLngBounds(points).pad(0.2), { maxZoom: 10 });
  }

  return {
    map,
    loadBoundaries,
    setVillages,
    update,
    flush,
    refreshAges,
    showDraft,
    focus,
    fitPoints,
    village: (id) => villages.get(id)?.data,
    /** Test and debugging hook: what each marker shows now. */
    inspect: () => ({
      villages: villages.size,
      affected: [...exposure.keys()].filter((id) => villages.has(id)).length,
      site: (id) => {
        const m = sites.get(id)?.marker;
        return m && { level: m.options.level, gauge: m.options.gauge, crossed: m.options.crossed };
      },
      team: (id) => {
        const m = teams.get(id)?.marker;
        if (!m) return null;
        const ll = m.getLatLng();
        return { lat: ll.lat, lon: ll.lng, shape: m.options.shape, stale: m.options.stale, lowBattery: m.options.lowBattery };
      },
      teams: teams.size,
      hazards: layers.hazard.getLayers().length,
    }),
  };
}

/** The legend's items: intensity steps, site levels, team shapes. */
export function legendItems() {
  return {
    intensity: INTENSITY_STEPS,
    sites: Object.entries(SITE_COLORS),
    teams: Object.entries(TEAM_SHAPES).map(([status, shape]) => ({ status, shape, color: TEAM_COLORS[status] })),
  };
}

/** Escapes text for Leaflet tooltips, which take HTML. */
export function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
}

export { formatDistance };
