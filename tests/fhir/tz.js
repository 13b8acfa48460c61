// Time-zone helpers shared by gen.js and selftest.js (no dependencies).
//
//   const tz = require('./tz');
//   tz.localDay(instantMs, 'America/New_York')      -> 'YYYY-MM-DD'
//   tz.offsetMinutes(instantMs, zone)               -> minutes east of UTC
//   tz.localMidnight('YYYY-MM-DD', zone)            -> instant ms of 00:00 local
//   tz.formatInOffset(instantMs, offsetMin, withMs) -> '2025-01-05T10:00:00+02:00'
//   tz.dayWindow('YYYY-MM-DD', zone)                -> {ge, lt} FHIR dateTimes
//                                                      with the zone's offset
//   tz.daysBetween(firstDay, lastDay)               -> ['YYYY-MM-DD', ...]
'use strict';

const fmtCache = new Map();
function parts(ms, zone) {
  let f = fmtCache.get(zone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', {
      timeZone: zone, hourCycle: 'h23', year: 'numeric', month: '2-digit', day: '2-digit',
      hour: '2-digit', minute: '2-digit', second: '2-digit',
    });
    fmtCache.set(zone, f);
  }
  const o = {};
  for (const p of f.formatToParts(new Date(ms))) o[p.type] = p.value;
  return o;
}

function localDay(ms, zone) {
  const p = parts(ms, zone);
  return `${p.year}-${p.month}-${p.day}`;
}

function offsetMinutes(ms, zone) {
  const p = parts(ms, zone);
  const asUtc = Date.UTC(+p.year, +p.month - 1, +p.day, +p.hour, +p.minute, +p.second);
  return Math.round((asUtc - Math.floor(ms / 1000) * 1000) / 60000);
}

function localMidnight(day, zone) {
  const [y, m, d] = day.split('-').map(Number);
  const wall = Date.UTC(y, m - 1, d);
  let t = wall - offsetMinutes(wall, zone) * 60000;
  t = wall - offsetMinutes(t, zone) * 60000;
  // a zone whose midnight does not exist (DST at 00:00): first instant of the day
  while (localDay(t, zone) !== day) t += 15 * 60000;
  while (localDay(t - 60000, zone) === day) t -= 60000;
  return t;
}

function pad(n, w = 2) { return String(n).padStart(w, '0'); }

function formatOffset(min) {
  if (min === 0) return 'Z';
  const s = min < 0 ? '-' : '+';
  const a = Math.abs(min);
  return `${s}${pad(Math.floor(a / 60))}:${pad(a % 60)}`;
}

function formatInOffset(ms, offsetMin, withMs) {
  const iso = new Date(ms + offsetMin * 60000).toISOString(); // YYYY-MM-DDTHH:MM:SS.sssZ
  const base = withMs ? iso.slice(0, 23) : iso.slice(0, 19);
  return base + formatOffset(offsetMin);
}

function addDays(day, n) {
  const [y, m, d] = day.split('-').map(Number);
  return new Date(Date.UTC(y, m - 1, d + n)).toISOString().slice(0, 10);
}

function dayWindow(day, zone) {
  const s = localMidnight(day, zone);
  const e = localMidnight(addDays(day, 1), zone);
  return {
    ge: formatInOffset(s, offsetMinutes(s, zone), false),
    lt: formatInOffset(e, offsetMinutes(e, zone), false),
    startMs: s, endMs: e,
  };
}

function daysBetween(first, last) {
  const out = [];
  for (let d = first; d <= last; d = addDays(d, 1)) out.push(d);
  return out;
}

module.exports = { localDay, offsetMinutes, localMidnight, formatInOffset, formatOffset, dayWindow, daysBetween, addDays };
