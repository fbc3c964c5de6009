/*
 * The SDK ships no typings for its modular arithmetic (modules/crypt/arith/modular.js, included
 * with the TLS modules): only what hosts/moddable/host.ts uses.
 */
declare module "modular" {
	export default class Modular {
		constructor(m: bigint);
		/** a^e mod m, natively (fxBigInt_mod_exp_LR: its temporaries in a pool, freed on return). */
		exp(a: bigint, e: bigint): bigint;
	}
}
