export interface Config {
  /** pltf, whose actions the scaffolder offers as pltf:<id>. */
  pltf?: {
    /** pltf's URL (its PLTF_PUBLIC_URL). */
    baseUrl: string;
    /**
     * A pltf API token, ideally limited to the actions the templates run.
     * @visibility secret
     */
    token: string;
    /** Which of pltf's actions to offer, as globs such as `service:*`; default all. */
    actions?: string[];
    /** How often the actions' descriptions and schemas are refreshed, in seconds; 0 never. Default 300. */
    refreshSeconds?: number;
  };
}
