/*
 * SHA-256 is lent by the host, streaming, so that large inputs (a firmware image read back from
 * flash) never need to be in memory at once. On the device it wraps Moddable's `Digest`:
 *   () => { const d = new Digest("SHA256"); return {update: b => d.write(b), digest: () => new Uint8Array(d.close())}; }
 * under Node it wraps `crypto.createHash("sha256")`.
 */

export interface Sha256 {
	update(bytes: Uint8Array): void;
	/** The 32-byte digest; the object is not used again afterwards. */
	digest(): Uint8Array;
}

export type CreateSha256 = () => Sha256;

export function sha256Of(createSha256: CreateSha256, bytes: Uint8Array): Uint8Array {
	const h = createSha256();
	h.update(bytes);
	const digest = h.digest();
	if (!(digest instanceof Uint8Array) || digest.length !== 32)
		throw new TypeError("createSha256: digest() must return 32 bytes (a Uint8Array)");
	return digest;
}

Object.freeze(sha256Of);
