/*
 * The SDK ships no typings for ssl/cert (modules/crypt/ssl/ssl_cert.js). Only the trust-anchor
 * registration is declared: that is all the firmware uses.
 */
declare module "ssl/cert" {
	export default class CertificateManager {
		constructor(options: {verify?: boolean; certificate?: ArrayBufferLike});
		/** Adds a trust anchor for this session only; throws "date validation failed" if it is not valid now. */
		register(certificate: ArrayBufferLike): void;
		/** Adds a trust anchor for every later session in this VM. */
		static register(certificate: ArrayBufferLike): void;
	}
}
