// The one user-assigned identity the Function App runs as: every connection (Service Bus, Storage, Key Vault,
// Application Insights, and optionally Dataverse and F&O) authenticates with it, so no key is ever stored.
param name string
param location string
param tags object = {}

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

output id string = identity.id
output name string = identity.name
output clientId string = identity.properties.clientId
output principalId string = identity.properties.principalId
