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
});
