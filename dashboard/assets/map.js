/* Browser-side callbacks of the dashboard (Dash loads every file of assets/). */
window.dash_clientside = Object.assign({}, window.dash_clientside);
window.dash_clientside.cronlake = Object.assign({}, window.dash_clientside.cronlake, {
    /* Live map: the zone a click falls in (a zone's fill, or a station's zone), if the zone dropdown offers it. */
    zoneOfClick: function (click, figure, options) {
        const unchanged = window.dash_clientside.no_update;
        if (!click || !click.points || !click.points.length || !figure) {
            return unchanged;
        }
        const point = click.points[0];
        const trace = figure.data[point.curveNumber] || {};
        const kind = (trace.meta || [])[0];
        const zone = kind === "zone" ? trace.name : (kind === "stations" && point.customdata ? point.customdata[2] : null);
        const offered = (options || []).some(o => (o !== null && typeof o === "object" ? o.value : o) === zone);
        return zone && offered ? zone : unchanged;
    },
    /* Live map: the station table's rows, from the markers' customdata (the table's columns, in order), by name
       then code. The server sends each station once, in the figure (or in a refresh's patch of it). */
    stationRows: function (figure, columns) {
        const rows = [];
        for (const trace of (figure && figure.data) || []) {
            if ((trace.meta || [])[0] === "stations") {
                for (const values of trace.customdata || []) {
                    rows.push(Object.fromEntries(columns.map((column, i) => [column.id, values[i]])));
                }
            }
        }
        const key = row => [String(row.name || ""), String(row.station_code || "")];
        const order = (a, b) => (a < b ? -1 : a > b ? 1 : 0);
        return rows.sort((a, b) => {
            const [ka, kb] = [key(a), key(b)];
            return order(ka[0], kb[0]) || order(ka[1], kb[1]);
        });
    },
});
