/*
 * Device Update's image store on the simulator: a file in the simulator's working directory (the
 * run directory of tools/sim-runner.ts) stands in for the next OTA partition. The image is written
 * to update.img and read back from it for the hash; complete() writes update.ready beside it, the
 * boot partition's stand-in; restart() prints the sim.restart event, on which the runner stops this
 * simulator and starts the image (a firmware build for the simulator, `npm run image`). The runner
 * also plays ESP-IDF's bootloader: an image that does not reach the hub in time, it replaces with
 * the previous one.
 */
import config from "mc/config";
import {File} from "file";
import type {ImageSink, ImageStore} from "azure-iot/host";
import {exactBuffer} from "azure-iot/moddable/host";

const IMAGE = "update.img";
const READY = "update.ready";
/** Room for a simulator build (about 3 MB), as an OTA partition would have for an ESP32 image; config updateImageBytes changes it. */
const DEFAULT_CAPACITY = 8 * 1024 * 1024;

class FileSink implements ImageSink {
	private _file: File | undefined;
	private _size: number;
	private _written = 0;

	constructor(size: number) {
		this._size = size;
		if (File.exists(READY)) File.delete(READY);
		if (File.exists(IMAGE)) File.delete(IMAGE);
		this._file = new File(IMAGE, true);
	}

	write(bytes: Uint8Array): void {
		const file = this._file;
		if (!file) throw new Error("the image was dropped or completed");
		if (this._written + bytes.length > this._size) throw new Error(`writing past the ${this._size} bytes the image was begun with`);
		file.position = this._written;
		// The simulator's File takes whole ArrayBuffers only (no views).
		file.write(exactBuffer(bytes));
		this._written += bytes.length;
	}

	read(offset: number, length: number): Uint8Array {
		const file = this._file;
		if (!file) throw new Error("the image was dropped or completed");
		file.position = offset;
		return new Uint8Array(file.read(ArrayBuffer, length) as ArrayBuffer);
	}

	complete(): void {
		const file = this._file;
		if (!file) throw new Error("the image was dropped or completed");
		if (this._written !== this._size) throw new Error(`the image has ${this._written} of its ${this._size} bytes`);
		file.close();
		this._file = undefined;
		const ready = new File(READY, true);
		ready.write(JSON.stringify({image: IMAGE, size: this._size}));
		ready.close();
	}

	abort(): void {
		const file = this._file;
		if (!file) return;
		this._file = undefined;
		file.close();
		if (File.exists(IMAGE)) File.delete(IMAGE);
	}
}

export function createImageStore(): ImageStore {
	const configured = Number((config as Record<string, unknown>).updateImageBytes);
	const capacity = configured > 0 ? configured : DEFAULT_CAPACITY;
	let current: FileSink | undefined;
	return Object.freeze({
		capacity,
		begin(size: number): ImageSink {
			if (!(size > 0 && size <= capacity)) throw new Error(`an image of ${size} bytes does not fit the ${capacity} bytes of the simulator's image file`);
			current?.abort();
			current = new FileSink(size);
			return current;
		},
		restart(): void {
			trace(JSON.stringify({event: "sim.restart", image: File.exists(READY) ? IMAGE : null}) + "\n");
		},
	});
}
