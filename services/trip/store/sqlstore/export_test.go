package sqlstore

import "github.com/hexride/hexride/dispatch"

// DatabaseRegionPlan is migration 1's statements for a database named name
// on a cluster with regions cluster, with the region map m (nil: none) and
// --primary-region primary, survival unset (zone, as migration 1 makes it).
func DatabaseRegionPlan(name string, cluster []string, m *dispatch.RegionMap, primary string) ([]string, error) {
	return databaseRegionPlan(name, cluster, migrateConfig{regions: m, primaryRegion: primary, survival: SurviveZone})
}
