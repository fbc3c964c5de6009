/*
 * Device Update's image store on Node (src/host.ts ImageStore): the image is written to a file,
 * read back from it for the hash, and "made bootable" by renaming it into place, so that a test or
 * a runner can see what the device would boot. The restart is the caller's (the Node platform's
 * reboot: a test makes a new Device, as the device would start again).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import type {ImageSink, ImageStore} from "../../src/host.js";

export interface FileImageStoreOptions {
	/** Directory for the image being written (next.img) and the one made bootable (boot.img). */
	dir: string;
	/** Bytes an image may take; default 4 MB (an ESP32 OTA partition is about 1.9 MB). */
	capacity?: number;
	/** The state of the running image (a test of the ESP32's rollback); default none. */
	runningState?: () => "pending" | "confirmed";
	confirm?: () => void;
	rollback?: () => void;
	restart?: () => void;
}

export const DEFAULT_IMAGE_CAPACITY = 4 * 1024 * 1024;

export function createFileImageStore(options: FileImageStoreOptions): ImageStore {
	const dir = path.resolve(options.dir);
	const next = path.join(dir, "next.img");
	const boot = path.join(dir, "boot.img");
	let current: FileSink | undefined;
	const store: ImageStore = {
		capacity: options.capacity ?? DEFAULT_IMAGE_CAPACITY,
		begin(size: number): ImageSink {
			if (!(Number.isInteger(size) && size > 0 && size <= store.capacity)) throw new Error(`an image of ${size} bytes does not fit the ${store.capacity} bytes of the image file`);
			current?.abort();
			fs.mkdirSync(dir, {recursive: true});
			current = new FileSink(next, boot, size);
			return current;
		},
		...(options.runningState ? {runningState: options.runningState} : {}),
		...(options.confirm ? {confirm: options.confirm} : {}),
		...(options.rollback ? {rollback: options.rollback} : {}),
		...(options.restart ? {restart: options.restart} : {}),
	};
	return Object.freeze(store);
}

class FileSink implements ImageSink {
	#fd: number | undefined;
	#written = 0;
	#done = false;

	constructor(readonly file: string, readonly target: string, readonly size: number) {
		this.#fd = fs.openSync(file, "w+");
	}

	write(bytes: Uint8Array): void {
		if (this.#fd === undefined) throw new Error("the image was dropped or completed");
		if (this.#written + bytes.length > this.size) throw new Error(`writing past the ${this.size} bytes the image was begun with`);
		fs.writeSync(this.#fd, bytes, 0, bytes.length, this.#written);
		this.#written += bytes.length;
	}

	read(offset: number, length: number): Uint8Array {
		if (this.#fd === undefined) throw new Error("the image was dropped or completed");
		const out = new Uint8Array(length);
		const n = fs.readSync(this.#fd, out, 0, length, offset);
		if (n !== length) throw new Error(`read ${n} of ${length} bytes at ${offset}`);
		return out;
	}

	complete(): void {
		if (this.#fd === undefined) throw new Error("the image was dropped or completed");
		if (this.#written !== this.size) throw new Error(`the image has ${this.#written} of its ${this.size} bytes`);
		fs.closeSync(this.#fd);
		this.#fd = undefined;
		this.#done = true;
		fs.renameSync(this.file, this.target);
	}

	abort(): void {
		if (this.#fd === undefined) return;
		fs.closeSync(this.#fd);
		this.#fd = undefined;
		if (!this.#done) fs.rmSync(this.file, {force: true});
	}
}
