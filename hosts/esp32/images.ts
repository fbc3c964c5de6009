/*
 * Device Update's image store on the ESP32: the SDK's `ota` module writes the next OTA partition
 * (esp_ota_begin/write/end/set_boot_partition); system.c gives its size and ESP-IDF's app rollback.
 * The hash checked against the signed one is taken over the bytes as they are written; esp_ota_end
 * then checks the image itself (its header and the SHA-256 esptool appends) before it can boot.
 * Not yet run on a board: docs/device-update.md says what is unchecked.
 */
import OTA from "ota";
import type {ImageSink, ImageStore} from "azure-iot/host";
import {otaCapacity, otaConfirm, otaRollback, otaState, restart} from "azure-iot/esp32/system";

class OtaSink implements ImageSink {
	private _ota: OTA | undefined;

	constructor() {
		this._ota = new OTA();
	}

	write(bytes: Uint8Array): void {
		if (!this._ota) throw new Error("the image was dropped or completed");
		this._ota.write(bytes);
	}

	complete(): void {
		const ota = this._ota;
		if (!ota) throw new Error("the image was dropped or completed");
		this._ota = undefined;
		ota.complete();
	}

	abort(): void {
		const ota = this._ota;
		this._ota = undefined;
		ota?.cancel();
	}
}

export function createImageStore(): ImageStore {
	let current: OtaSink | undefined;
	return Object.freeze({
		get capacity(): number {
			return otaCapacity();
		},
		begin(size: number): ImageSink {
			const capacity = otaCapacity();
			if (!capacity) throw new Error("the flash has no OTA partitions: build with the ota module's autosplit (hosts/esp32/manifest.json)");
			if (size > capacity) throw new Error(`an image of ${size} bytes does not fit the ${capacity}-byte OTA partition`);
			current?.abort();
			current = new OtaSink();
			return current;
		},
		runningState: () => otaState(),
		confirm: () => otaConfirm(),
		rollback: () => otaRollback(),
		restart: () => restart(),
	});
}
