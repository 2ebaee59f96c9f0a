// The tiers this portal offers to choose from: the server's default set (the server refuses
// others with a problem, which the pages show).
export const TIERS = ["developer", "team", "enterprise"];
