/*
 * The SDK ships no typings for its JS HMAC (modules/crypt/etc/hmac.js). sign() and verify() are
 * left out on purpose: they call a method that does not exist.
 */
declare module "hmac" {
	import {Digest} from "crypt";

	export default class HMAC {
		constructor(digest: Digest, key: ArrayBufferLike, bitLength?: number);
		process(...items: (string | ArrayBufferLike)[]): ArrayBuffer;
		update(...items: (string | ArrayBufferLike)[]): void;
		close(): ArrayBuffer;
		reset(): void;
	}
}
