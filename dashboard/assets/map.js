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
    /* Live map: a refresh's changes (live.py `changes`) merged into the figure drawn: the zones' colours and hover
       texts, the colour bar's marker, and the station traces rebuilt from each station's code and moving details, its
       state's label from the trace (meta[2]), the rest (position, name, zone, capacity) from the markers drawn.
       The other traces keep their arrays: the outlines are not sent again. Changes computed for another frame
       than the one drawn (an answer overtaken by a zone choice) are dropped. */
    refreshMap: function (moved, figure, drawn) {
        if (!moved || !figure || !figure.data || moved.frame !== drawn) {
            return window.dash_clientside.no_update;
        }
        const known = {};
        for (const trace of figure.data) {
            if ((trace.meta || [])[0] === "stations") {
                trace.customdata.forEach((details, i) => { known[details[1]] = [trace.x[i], trace.y[i], details]; });
            }
        }
        const data = figure.data.slice();
        for (const [index, fillcolor, text] of moved.zones) {
            data[index] = Object.assign({}, data[index], {fillcolor: fillcolor, text: text});
        }
        for (const [index, trace] of moved.traces) {
            const {rows, ...rest} = trace;
            const points = (rows || []).map(row => known[row[0]]);
            data[index] = Object.assign({}, data[index], rest, rows ? {
                x: points.map(p => p[0]), y: points.map(p => p[1]),
                customdata: rows.map((row, i) => {
                    const details = points[i][2].slice();
                    details[moved.state_at] = trace.meta[2];
                    moved.moving.forEach((position, k) => { details[position] = row[k + 1]; });
                    return details;
                }),
            } : {});
        }
        return Object.assign({}, figure, {data: data});
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
