/** Restarts the ESP32 at once (esp_restart); does not return. */
declare module "hosts/esp32/restart" {
	export default function restart(): void;
}
