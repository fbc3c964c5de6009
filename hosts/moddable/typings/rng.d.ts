/*
 * The SDK ships no typings for rng (modules/crypt/etc/rng.js), the generator its TLS uses for
 * client randoms and premaster secrets.
 */
declare module "rng" {
	const RNG: {
		get(count: number): ArrayBuffer;
		/** Re-seeds; without a seed, from C rand(). */
		init(seed?: ArrayBuffer): void;
	};
	export default RNG;
}
