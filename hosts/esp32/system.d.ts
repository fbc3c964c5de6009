declare module "azure-iot/esp32/system" {
	/** Restarts the ESP32 at once (esp_restart); does not return. */
	export function restart(): void;
	/** esp_reset_reason() in words: "power-on", "software", "panic", "task-watchdog", "brownout", … */
	export function resetReason(): string;
}
