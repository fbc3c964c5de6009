declare module "azure-iot/esp32/system" {
	/** Restarts the ESP32 at once (esp_restart); does not return. */
	export function restart(): void;
	/** esp_reset_reason() in words: "power-on", "software", "panic", "task-watchdog", "brownout", … */
	export function resetReason(): string;
	/** Bytes of the next OTA partition (0 without OTA partitions). */
	export function otaCapacity(): number;
	/** "pending": the running image was booted after an update and is not marked valid yet (ESP_OTA_IMG_PENDING_VERIFY). */
	export function otaState(): "pending" | "confirmed";
	/** esp_ota_mark_app_valid_cancel_rollback(). */
	export function otaConfirm(): void;
	/** esp_ota_mark_app_invalid_rollback_and_reboot(): does not return unless there is no image to go back to. */
	export function otaRollback(): void;
}

declare module "ota" {
	/** The SDK's ESP32 OTA (build/devices/esp32/modules/ota): esp_ota_begin on the next partition, sequential writes. */
	export default class OTA {
		constructor();
		write(data: ArrayBuffer | Uint8Array): void;
		/** esp_ota_end without setting the boot partition; safe to repeat. */
		cancel(): void;
		/** esp_ota_end (ESP-IDF checks the image), then esp_ota_set_boot_partition. Does not restart. */
		complete(): void;
	}
}
